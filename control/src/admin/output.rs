//! What an admin command prints: a table for a person, or with `--json`
//! one JSON document for a script. Times are Unix seconds in JSON and
//! UTC in tables.

use openspeak_client::pb;
use serde_json::{Value, json};

/// An admin command's answer.
#[derive(Debug)]
pub enum Printed {
    /// A new token: its plaintext (shown this once) and what it is.
    NewToken(String, pb::TokenInfo),
    Tokens(Vec<pb::TokenInfo>),
    Channels(Vec<pb::Channel>),
    Bans(Vec<pb::Ban>),
    Status {
        /// False: read from a stopped server's store.
        running: bool,
        status: pb::ServerStatus,
        bans: usize,
    },
    /// A token revoked, by id.
    Revoked(String),
    /// A channel deleted, by id.
    Deleted(String),
    /// A ban lifted, and whether there was one.
    Unbanned {
        address: String,
        removed: bool,
    },
}

impl Printed {
    /// Prints to stdout.
    pub fn print(&self, json: bool) {
        if json {
            println!("{:#}", self.json());
        } else {
            print!("{}", self.text());
        }
    }

    /// The JSON document.
    pub fn json(&self) -> Value {
        match self {
            Printed::NewToken(plaintext, info) => {
                let mut v = token_json(info);
                v["token"] = json!(plaintext);
                v
            }
            Printed::Tokens(tokens) => {
                json!({ "tokens": tokens.iter().map(token_json).collect::<Vec<_>>() })
            }
            Printed::Channels(channels) => {
                json!({ "channels": channels.iter().map(channel_json).collect::<Vec<_>>() })
            }
            Printed::Bans(bans) => json!({ "bans": bans.iter().map(ban_json).collect::<Vec<_>>() }),
            Printed::Status {
                running,
                status,
                bans,
            } => json!({
                "running": running,
                "version": status.version,
                "uptime_seconds": running.then_some(status.uptime_seconds),
                "sessions": status.sessions,
                "channels": status.channels,
                "bans": bans,
                "dataplanes": status.dataplanes.iter().map(|d| json!({
                    "id": d.id, "sessions": d.sessions, "forwarded": d.forwarded,
                })).collect::<Vec<_>>(),
            }),
            Printed::Revoked(id) => json!({ "revoked": id }),
            Printed::Deleted(id) => json!({ "deleted": id }),
            Printed::Unbanned { address, removed } => {
                json!({ "address": address, "removed": removed })
            }
        }
    }

    /// The text for a person.
    pub fn text(&self) -> String {
        match self {
            Printed::NewToken(plaintext, info) => format!(
                "token: {plaintext}\n(shown this once; the server keeps only its hash)\n\n{}",
                table(TOKEN_HEAD, std::slice::from_ref(info).iter().map(token_row))
            ),
            Printed::Tokens(tokens) => table(TOKEN_HEAD, tokens.iter().map(token_row)),
            Printed::Channels(channels) => table(
                &[
                    "ID",
                    "NAME",
                    "PARENT",
                    "MEMBERS",
                    "MAX",
                    "PASSWORD",
                    "DESCRIPTION",
                ],
                channels.iter().map(|c| {
                    vec![
                        c.id.clone(),
                        c.name.clone(),
                        or_dash(&c.parent_id),
                        c.member_count.to_string(),
                        limit(c.max_members),
                        if c.has_password { "yes" } else { "no" }.into(),
                        c.description.clone(),
                    ]
                }),
            ),
            Printed::Bans(bans) => table(
                &["ADDRESS", "UNTIL (UTC)"],
                bans.iter()
                    .map(|b| vec![b.address.clone(), utc(b.until.as_ref().map(seconds))]),
            ),
            Printed::Status {
                running,
                status,
                bans,
            } => {
                let mut out = if *running {
                    format!(
                        "running: yes (version {}, up {} s)\nsessions: {}\n",
                        status.version, status.uptime_seconds, status.sessions
                    )
                } else {
                    "running: no (read from the stored state)\n".to_owned()
                };
                out.push_str(&format!(
                    "channels: {}\nbans: {bans}\ndata planes: {}\n",
                    status.channels,
                    status.dataplanes.len()
                ));
                if !status.dataplanes.is_empty() {
                    out.push('\n');
                    out.push_str(&table(
                        &["DATA PLANE", "SESSIONS", "FORWARDED"],
                        status.dataplanes.iter().map(|d| {
                            vec![
                                d.id.clone(),
                                d.sessions.to_string(),
                                d.forwarded.to_string(),
                            ]
                        }),
                    ));
                }
                out
            }
            Printed::Revoked(id) => format!("revoked token {id}\n"),
            Printed::Deleted(id) => format!("deleted channel {id} and its subchannels\n"),
            Printed::Unbanned {
                address,
                removed: true,
            } => format!("{address} may connect again\n"),
            Printed::Unbanned { address, .. } => format!("{address} was not banned\n"),
        }
    }
}

const TOKEN_HEAD: &[&str] = &["ID", "LABEL", "ROLE", "CREATED (UTC)", "EXPIRES (UTC)"];

fn token_row(t: &pb::TokenInfo) -> Vec<String> {
    vec![
        t.id.clone(),
        t.label.clone(),
        role(t.role).into(),
        utc(t.created_at.as_ref().map(seconds)),
        t.expires_at
            .as_ref()
            .map_or_else(|| "never".into(), |e| utc(Some(seconds(e)))),
    ]
}

fn token_json(t: &pb::TokenInfo) -> Value {
    json!({
        "id": t.id,
        "label": t.label,
        "role": role(t.role),
        "created_at": t.created_at.as_ref().map(seconds),
        "expires_at": t.expires_at.as_ref().map(seconds),
    })
}

fn channel_json(c: &pb::Channel) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "parent_id": (!c.parent_id.is_empty()).then_some(&c.parent_id),
        "description": c.description,
        "members": c.member_count,
        "max_members": c.max_members,
        "has_password": c.has_password,
        "temporary": c.temporary,
    })
}

fn ban_json(b: &pb::Ban) -> Value {
    json!({ "address": b.address, "until": b.until.as_ref().map(seconds) })
}

fn role(wire: i32) -> &'static str {
    match pb::Role::try_from(wire) {
        Ok(pb::Role::Admin) => "admin",
        Ok(pb::Role::Member) => "member",
        _ => "unknown",
    }
}

fn seconds(t: &prost_types::Timestamp) -> i64 {
    t.seconds
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.into() }
}

fn limit(max: u32) -> String {
    if max == 0 {
        "-".into()
    } else {
        max.to_string()
    }
}

/// `2026-12-03 15:04:05`, from Unix seconds.
fn utc(secs: Option<i64>) -> String {
    let Some(secs) = secs.and_then(|s| u64::try_from(s).ok()) else {
        return "-".into();
    };
    let days = secs / 86_400;
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    let (y, mo, d) = civil_from_days(days as i64);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}:{s:02}")
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's well-known algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Columns padded to their widest cell; "(none)" for no rows.
fn table(head: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows.collect();
    if rows.is_empty() {
        return "(none)\n".into();
    }
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(head.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(utc(Some(0)), "1970-01-01 00:00:00");
        assert_eq!(utc(Some(951_782_400)), "2000-02-29 00:00:00");
        assert_eq!(utc(Some(1_796_310_245)), "2026-12-03 15:04:05");
        assert_eq!(utc(None), "-");
    }

    #[test]
    fn tables_line_up_and_json_never_shows_a_secret_it_was_not_given() {
        let info = pb::TokenInfo {
            id: "abc".into(),
            label: "ops".into(),
            role: pb::Role::Admin.into(),
            ..Default::default()
        };
        let text = Printed::Tokens(vec![info.clone()]).text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0].find("LABEL"), lines[1].find("ops"), "{text}");
        let v = Printed::Tokens(vec![info]).json();
        assert_eq!(v["tokens"][0]["role"], "admin");
        assert!(v["tokens"][0].get("token").is_none());
        assert_eq!(Printed::Bans(vec![]).text(), "(none)\n");
    }
}
