//! The gRPC edge around the services: message size limits, request ids,
//! health checking and server reflection.

mod support;

use openspeak_client::{NewChannel, pb};
use openspeak_shared::{Reason, metadata};
use prost::Message;
use support::{AsStatus, ClientExt, Raw, TestServer, assert_status, within};
use tonic::Code;
use tonic::metadata::{Ascii, MetadataMap, MetadataValue};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::{v1, v1alpha};

const OPENSPEAK_SERVICES: [&str; 5] = [
    "openspeak.v1.AdminService",
    "openspeak.v1.AuthService",
    "openspeak.v1.ChannelService",
    "openspeak.v1.PresenceService",
    "openspeak.v1.VoiceService",
];

async fn oversized_create(server: &TestServer) -> tonic::Status {
    let admin = server.admin().await;
    let result = admin
        .create_channel_with(NewChannel::new("Huge").description("d".repeat(10 * 1024)))
        .await;
    match result {
        Ok(channel) => panic!("a 10 KB request passed a 4 KB limit: {channel:?}"),
        Err(error) => error.as_status().clone(),
    }
}

#[tokio::test]
async fn requests_over_max_message_bytes_are_refused_and_the_server_carries_on() {
    let server = TestServer::start_with(|c| c.server.max_message_bytes = 4096).await;

    let status = oversized_create(&server).await;
    assert!(
        matches!(
            status.code(),
            Code::ResourceExhausted | Code::OutOfRange | Code::InvalidArgument
        ),
        "an oversized request is refused as too large: {status:?}"
    );
    // Raw: the call itself, not a later message of its stream, is refused;
    // and the calls after it go over the very same connection.
    let admin = server.raw(&server.admin_token).await;
    let connect = within(
        "an oversized Connect",
        admin.presence().connect(admin.req(pb::ConnectRequest {
            display_name: "n".repeat(10 * 1024),
        })),
    )
    .await;
    assert!(connect.is_err(), "an oversized Connect is refused");

    // Nothing was created, and the server still answers, on the same
    // connection and on a new one.
    assert_eq!(admin.list_channels().await.len(), 1);
    let made = within(
        "CreateChannel",
        admin
            .channels()
            .create_channel(admin.req(pb::CreateChannelRequest {
                name: "Normal".into(),
                description: "d".repeat(1024),
                ..Default::default()
            })),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(made.description.len(), 1024);
    let fresh = server.admin().await;
    assert_eq!(fresh.list_channels().await.unwrap().len(), 2);
    fresh.session("still here").await;
}

#[tokio::test]
async fn an_oversized_request_is_an_invalid_request_with_error_info() {
    let server = TestServer::start_with(|c| c.server.max_message_bytes = 4096).await;
    let status = oversized_create(&server).await;
    assert_status(
        &status,
        Reason::InvalidRequest,
        tonic::Code::InvalidArgument,
    );
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let server = TestServer::start().await;
    // Raw: request ids are metadata the library neither sets nor shows.
    let admin = server.raw(&server.admin_token).await;

    let request = tagged(&admin, pb::WhoAmIRequest {}, "test-request-0042");
    let response = within("WhoAmI", admin.auth().who_am_i(request))
        .await
        .unwrap();
    assert_eq!(request_id(response.metadata()), "test-request-0042");

    let mut generated = Vec::new();
    for _ in 0..2 {
        let response = within(
            "WhoAmI",
            admin.auth().who_am_i(admin.req(pb::WhoAmIRequest {})),
        )
        .await
        .unwrap();
        let id = response
            .metadata()
            .get(metadata::REQUEST_ID)
            .expect("a request id is generated when none is given")
            .to_str()
            .unwrap()
            .to_owned();
        assert!(!id.is_empty());
        generated.push(id);
    }
    assert_ne!(generated[0], generated[1], "generated ids differ");

    // Errors carry it too, and so does a session stream.
    let request = tagged(
        &admin,
        pb::GetChannelRequest {
            channel_id: "no-such-channel".into(),
        },
        "test-request-error",
    );
    let status = within("GetChannel", admin.channels().get_channel(request))
        .await
        .unwrap_err();
    assert_status(&status, Reason::ChannelNotFound, Code::NotFound);
    assert_eq!(request_id(status.metadata()), "test-request-error");
    let request = tagged(
        &admin,
        pb::ConnectRequest {
            display_name: "streamer".into(),
        },
        "test-request-stream",
    );
    let response = within("Connect", admin.presence().connect(request))
        .await
        .unwrap();
    assert_eq!(request_id(response.metadata()), "test-request-stream");
}

/// `message` as `admin`'s request, with request id `id`.
fn tagged<T>(admin: &Raw, message: T, id: &'static str) -> tonic::Request<T> {
    let mut request = admin.req(message);
    request
        .metadata_mut()
        .insert(metadata::REQUEST_ID, MetadataValue::from_static(id));
    request
}

/// The request id that a response or an error carries.
fn request_id(metadata: &MetadataMap) -> &MetadataValue<Ascii> {
    metadata.get(metadata::REQUEST_ID).unwrap()
}

#[tokio::test]
async fn health_reports_serving_without_a_token() {
    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.connection().await);
    for service in std::iter::once("").chain(OPENSPEAK_SERVICES) {
        let response = within(
            "Health.Check",
            health.check(HealthCheckRequest {
                service: service.into(),
            }),
        )
        .await
        .unwrap_or_else(|e| panic!("Health.Check({service:?}): {e:?}"))
        .into_inner();
        assert_eq!(
            response.status,
            ServingStatus::Serving as i32,
            "Health.Check({service:?})"
        );
    }
    let unknown = within(
        "Health.Check",
        health.check(HealthCheckRequest {
            service: "openspeak.v1.NoSuchService".into(),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

/// Sends `requests` on one reflection v1 stream; returns the responses.
async fn reflect_v1(
    server: &TestServer,
    requests: Vec<v1::server_reflection_request::MessageRequest>,
) -> Vec<v1::server_reflection_response::MessageResponse> {
    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(server.connection().await);
    let n = requests.len();
    let requests = requests.into_iter().map(|r| v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(r),
    });
    let mut stream = within(
        "ServerReflectionInfo",
        client.server_reflection_info(tokio_stream::iter(requests)),
    )
    .await
    .expect("reflection v1 is served")
    .into_inner();
    let mut out = Vec::new();
    for _ in 0..n {
        let response = within("a reflection response", stream.message())
            .await
            .expect("a reflection response")
            .expect("one response per request");
        out.push(response.message_response.expect("a message response"));
    }
    out
}

fn file_names(response: &v1::server_reflection_response::MessageResponse) -> Vec<String> {
    let v1::server_reflection_response::MessageResponse::FileDescriptorResponse(files) = response
    else {
        panic!("expected file descriptors, got {response:?}");
    };
    files
        .file_descriptor_proto
        .iter()
        .map(|bytes| {
            prost_types::FileDescriptorProto::decode(bytes.as_slice())
                .expect("a valid FileDescriptorProto")
                .name()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn reflection_lists_the_services_and_serves_their_files() {
    use v1::server_reflection_request::MessageRequest as Req;
    use v1::server_reflection_response::MessageResponse as Resp;
    let server = TestServer::start().await;
    let responses = reflect_v1(
        &server,
        vec![
            Req::ListServices(String::new()),
            Req::FileContainingSymbol("openspeak.v1.ChannelService".into()),
            Req::FileContainingSymbol("openspeak.v1.TokenInfo".into()),
            Req::FileByFilename("google/protobuf/timestamp.proto".into()),
        ],
    )
    .await;

    let Resp::ListServicesResponse(list) = &responses[0] else {
        panic!("expected a service list, got {:?}", responses[0]);
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for service in OPENSPEAK_SERVICES {
        assert!(names.contains(&service), "{service} in {names:?}");
    }
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

    assert!(
        file_names(&responses[1]).contains(&"openspeak/v1/channel.proto".to_owned()),
        "{:?}",
        file_names(&responses[1])
    );
    let token_files = file_names(&responses[2]);
    assert!(token_files.contains(&"openspeak/v1/auth.proto".to_owned()));
    // The well-known import comes along, so tools need no .proto files.
    assert!(file_names(&responses[3]).contains(&"google/protobuf/timestamp.proto".to_owned()));

    // v1alpha too.
    let mut alpha =
        v1alpha::server_reflection_client::ServerReflectionClient::new(server.connection().await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut stream = within(
        "ServerReflectionInfo (v1alpha)",
        alpha.server_reflection_info(tokio_stream::iter([request])),
    )
    .await
    .expect("reflection v1alpha is served")
    .into_inner();
    let response = within("a v1alpha response", stream.message())
        .await
        .unwrap()
        .unwrap();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in OPENSPEAK_SERVICES {
        assert!(names.iter().any(|n| n == service), "{service} in {names:?}");
    }
}
