//! Connection limits: idle and slow connections are closed, connections are capped in total
//! and per client address, real-time sockets per user, and a declared body over the limit is
//! refused before it is read.
//!
//! Clients here speak raw HTTP/1.1 over TCP where a test must control every byte (a head sent
//! a byte per second, headers without their body, a socket that sends nothing), and bind to
//! other loopback addresses (127.0.0.2, …) to be a different client.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::harness::{
    Backend, SioClient, TestServer, TestStorage, WsClient, dms_with_open_files, eventually, run,
    serve,
};

/// The server's socket address.
fn address(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .parse()
        .unwrap()
}

/// A TCP connection to the server from loopback address `127.0.0.{host}`.
async fn connect_from(url: &str, host: u8) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, host), 0)))
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), socket.connect(address(url)))
        .await
        .expect("the server takes connections")
        .unwrap()
}

/// Everything the server sends until it closes the connection; panics if it is still open
/// after `within`.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut received = Vec::new();
    tokio::time::timeout(within, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => received.extend_from_slice(&buffer[..read]),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the server kept the connection open for {within:?}"));
    received
}

/// An HTTP/1.1 response: status, headers (lower-case names) and the body as JSON.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: HashMap<String, String>,
    body: Value,
}

fn parse(bytes: &[u8]) -> Raw {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect::<HashMap<_, _>>();
    let length: usize = headers["content-length"].parse().unwrap();
    Raw {
        status: status.parse().unwrap(),
        body: serde_json::from_str(&body[..length]).unwrap_or(Value::Null),
        headers,
    }
}

/// Reads one whole response from a connection that stays open (its `content-length` tells
/// where it ends).
async fn read_response(stream: &mut TcpStream) -> Raw {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let read = stream.read(&mut buffer).await.unwrap();
            assert!(read > 0, "closed mid-response: {received:?}");
            received.extend_from_slice(&buffer[..read]);
            let text = String::from_utf8_lossy(&received);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|line| {
                        line.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|value| value.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    return;
                }
            }
        }
    })
    .await
    .expect("a response");
    parse(&received)
}

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nhost: dms\r\n\r\n";

/// Sends `bytes` a byte a second (then nothing) and returns what the server sent until it
/// closed the connection; `None` when it had not closed it within 20 s.
async fn a_byte_a_second(mut stream: TcpStream, bytes: &[u8]) -> Option<Vec<u8>> {
    let (mut reader, mut writer) = stream.split();
    let write = async {
        for byte in bytes {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        std::future::pending::<()>().await;
    };
    let read = async {
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => return received,
                Ok(read) => received.extend_from_slice(&buffer[..read]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), async {
        tokio::select! {
            () = write => unreachable!(),
            received = read => received,
        }
    })
    .await
    .ok()
}

/// Asserts a problem answered by the connection layer (before any request was read, so
/// without a request id).
#[track_caller]
fn assert_early_problem(raw: &Raw, status: u16, code: &str) {
    assert_eq!(raw.status, status, "{raw:?}");
    assert_eq!(raw.headers["content-type"], "application/problem+json");
    assert_eq!(raw.headers["retry-after"], "1");
    assert_eq!(raw.headers["connection"], "close");
    assert_eq!(raw.body["code"], code, "{raw:?}");
    assert_eq!(raw.body["status"], status);
    assert_eq!(raw.body["type"], format!("/problems/{code}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_sent_a_byte_per_second_are_cut_off_after_the_header_timeout() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.http_header_timeout_seconds = 2;
        config.http_idle_timeout_seconds = 60;
    })
    .await;
    let trickle = |stream: TcpStream| async move {
        let started = Instant::now();
        let head = b"GET /health HTTP/1.1\r\nhost: dms\r\nx-padding: slowly\r\n\r\n";
        let received = a_byte_a_second(stream, head)
            .await
            .expect("the server closes a head that takes too long");
        (started.elapsed(), received)
    };
    // 20 slowloris connections at once: each is closed, unanswered, once its 2 s are up
    // (the head would take 50 s at this pace).
    let mut slow = Vec::new();
    for _ in 0..20 {
        slow.push(tokio::spawn(trickle(connect_from(&server.url, 1).await)));
    }
    for connection in slow {
        let (elapsed, received) = connection.await.unwrap();
        assert!(received.is_empty(), "{received:?}");
        assert!(elapsed >= Duration::from_millis(1900), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(12), "{elapsed:?}");
    }

    // On a keep-alive connection, the clock of a later request starts with its first byte:
    // it is cut off after the header timeout, not after the (60 s) idle timeout.
    let mut stream = connect_from(&server.url, 1).await;
    stream.write_all(HEALTH).await.unwrap();
    assert_eq!(read_response(&mut stream).await.status, 200);
    let (elapsed, received) = trickle(stream).await;
    assert!(received.is_empty(), "{received:?}");
    assert!(elapsed >= Duration::from_millis(1900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(12), "{elapsed:?}");

    // A client that sends its head at once is served as before.
    server.api().get("/health").await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_connections_are_closed() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.http_header_timeout_seconds = 1;
        config.http_idle_timeout_seconds = 4;
    })
    .await;
    // A connection that never sends anything: closed after the header timeout.
    let started = Instant::now();
    let mut silent = connect_from(&server.url, 1).await;
    let received = until_closed(&mut silent, Duration::from_secs(11)).await;
    assert!(received.is_empty(), "{received:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));

    // A keep-alive connection waits for its next request up to the idle timeout: past the
    // header timeout it still takes one, then it is closed once idle for 4 s.
    let mut kept = connect_from(&server.url, 1).await;
    kept.write_all(HEALTH).await.unwrap();
    assert_eq!(read_response(&mut kept).await.status, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    kept.write_all(HEALTH).await.unwrap();
    assert_eq!(read_response(&mut kept).await.status, 200);
    let answered = Instant::now();
    let received = until_closed(&mut kept, Duration::from_secs(14)).await;
    assert!(received.is_empty(), "{received:?}");
    assert!(
        answered.elapsed() >= Duration::from_millis(3900),
        "{:?}",
        answered.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_arrives_too_slowly_is_answered_408_and_nothing_is_stored() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.http_body_timeout_seconds = 2;
    })
    .await;
    let admin = server.admin().await;
    let body = json!({ "recipient_id": admin.user_id(), "content": "slowly" }).to_string();
    let mut stream = connect_from(&server.url, 1).await;
    let head = format!(
        "POST /messages HTTP/1.1\r\nhost: dms\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        admin.token,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // A byte per second: each read is quick, the whole body is not.
    let received = a_byte_a_second(stream, body.as_bytes())
        .await
        .expect("the server answers and closes a body that takes too long");
    assert!(started.elapsed() >= Duration::from_millis(1900));
    let raw = parse(&received);
    assert_eq!(raw.status, 408, "{raw:?}");
    assert_eq!(raw.headers["content-type"], "application/problem+json");
    let request_id = raw.body["request_id"].as_str().unwrap().to_owned();
    assert_eq!(raw.headers["x-request-id"], request_id);
    assert_eq!(
        raw.body,
        json!({
            "type": "/problems/request_timeout",
            "title": "Request timeout",
            "status": 408,
            "detail": "the request body did not arrive within 2 s of the server reading it (DMS_HTTP_BODY_TIMEOUT_SECONDS)",
            "code": "request_timeout",
            "request_id": request_id,
        })
    );
    let messages = admin.api.get("/messages").await.expect(200);
    assert_eq!(messages.body["items"], json!([]), "{}", messages.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_body_over_the_limit_is_refused_before_it_is_sent() {
    let server = TestServer::start(Backend::Sqlite).await;
    let admin = server.admin().await;
    let headers_only = |path: &str, content_type: &str, token: Option<&str>| {
        let authorization = token
            .map(|token| format!("authorization: Bearer {token}\r\n"))
            .unwrap_or_default();
        format!(
            "POST {path} HTTP/1.1\r\nhost: dms\r\n{authorization}content-type: {content_type}\r\ncontent-length: 100000000\r\n\r\n"
        )
    };
    for token in [Some(admin.token.as_str()), None] {
        let mut stream = connect_from(&server.url, 1).await;
        stream
            .write_all(headers_only("/messages", "application/json", token).as_bytes())
            .await
            .unwrap();
        // Not one byte of the body is sent: the answer comes anyway, and the connection ends.
        let raw = parse(&until_closed(&mut stream, Duration::from_secs(10)).await);
        assert_eq!(raw.status, 413, "{raw:?}");
        assert_eq!(raw.headers["content-type"], "application/problem+json");
        let request_id = raw.body["request_id"].as_str().unwrap().to_owned();
        assert_eq!(
            raw.body,
            json!({
                "type": "/problems/payload_too_large",
                "title": "Payload too large",
                "status": 413,
                "detail": "the request body is larger than the server accepts (max_body_bytes)",
                "code": "payload_too_large",
                "request_id": request_id,
            })
        );
    }
    let mut stream = connect_from(&server.url, 1).await;
    stream
        .write_all(headers_only("/plugins", "application/wasm", Some(&admin.token)).as_bytes())
        .await
        .unwrap();
    let raw = parse(&until_closed(&mut stream, Duration::from_secs(10)).await);
    assert_eq!(raw.status, 413, "{raw:?}");
    let request_id = raw.body["request_id"].as_str().unwrap().to_owned();
    assert_eq!(
        raw.body,
        json!({
            "type": "/problems/component_too_large",
            "title": "Component too large",
            "status": 413,
            "detail": "the request declares a component of 100000000 bytes, over the limit of 10485760 bytes",
            "code": "component_too_large",
            "size": 100000000,
            "limit": 10485760,
            "request_id": request_id,
        })
    );
    // Nothing was stored.
    let messages = admin.api.get("/messages").await.expect(200);
    assert_eq!(messages.body["items"], json!([]));
    let plugins = admin.api.get("/plugins").await.expect(200);
    assert_eq!(plugins.body["items"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_caps_are_answered_and_closed_and_others_get_in() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.max_connections = 8;
        config.max_connections_per_address = 4;
        // Long enough that the idle sockets below stay open for the whole test.
        config.http_header_timeout_seconds = 120;
    })
    .await;
    let open = |count: usize| {
        let admission = server.state.admission.clone();
        move || {
            let admission = admission.clone();
            async move { admission.open() == count }
        }
    };
    let mut held_one = Vec::new();
    for _ in 0..4 {
        held_one.push(connect_from(&server.url, 1).await);
    }
    eventually("the server holds 4 connections", open(4)).await;
    // The address holds 4: the next connection from it is told so at once, without sending
    // a byte, and closed.
    let mut over = connect_from(&server.url, 1).await;
    let raw = parse(&until_closed(&mut over, Duration::from_secs(10)).await);
    assert_early_problem(&raw, 429, "too_many_connections");
    assert_eq!(
        raw.body["detail"],
        "this address already holds 4 open connections, the most this server allows from one address (DMS_MAX_CONNECTIONS_PER_ADDRESS); reuse or close some"
    );
    // A client that sends its request at once reads the same answer.
    let http = reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::from([127, 0, 0, 1]))
        .build()
        .unwrap();
    let response = http
        .get(format!("{}/health", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "too_many_connections");

    // Another address is served.
    assert_eq!(health_from(&server.url, 2).await, 200);
    eventually("the server holds 4 connections", open(4)).await;

    // 8 in all: the next connection, from any address, is told the server is busy.
    let mut held_two = Vec::new();
    for _ in 0..4 {
        held_two.push(connect_from(&server.url, 2).await);
    }
    eventually("the server holds 8 connections", open(8)).await;
    let mut busy = connect_from(&server.url, 3).await;
    let raw = parse(&until_closed(&mut busy, Duration::from_secs(10)).await);
    assert_early_problem(&raw, 503, "server_busy");
    assert_eq!(
        raw.body["detail"],
        "the server holds 8 open connections, the most it allows (DMS_MAX_CONNECTIONS); retry shortly"
    );

    // A closed connection gives its place back.
    drop(held_one.pop());
    eventually("a place is free again", open(7)).await;
    assert_eq!(health_from(&server.url, 3).await, 200);
}

/// `GET /health` from `127.0.0.{host}` on a connection of its own; the status.
async fn health_from(url: &str, host: u8) -> u16 {
    let mut stream = connect_from(url, host).await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: dms\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    parse(&until_closed(&mut stream, Duration::from_secs(10)).await).status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_binary_keeps_answering_health_with_more_idle_sockets_than_descriptors() {
    raise_own_open_file_limit();
    let storage = TestStorage::create(Backend::Sqlite).await;
    let configured = |command: &mut tokio::process::Command| {
        command
            .env("DMS_DB_MAX_CONNECTIONS", "4")
            .env("DMS_DISPATCH_CONCURRENCY", "16")
            .env("DMS_PLUGIN_MAX_INSTANCES", "64")
            .env("DMS_MAX_CONNECTIONS_PER_ADDRESS", "32")
            .env("DMS_HTTP_HEADER_TIMEOUT_SECONDS", "5");
    };
    let mut command = dms_with_open_files(storage.data_dir(), 256);
    configured(&mut command);
    let served = serve(command).await;
    assert_eq!(health_from(&served.url, 2).await, 200);

    // 300 idle sockets from one address, more than the process has descriptors: the address
    // keeps 32; the others are answered 429 (32 at a time) or closed at once.
    let mut idle = Vec::new();
    for _ in 0..300 {
        let stream = connect_from(&served.url, 1).await;
        idle.push(tokio::spawn(async move {
            let opened = Instant::now();
            let mut stream = stream;
            let received = until_closed(&mut stream, Duration::from_secs(30)).await;
            (opened.elapsed(), received)
        }));
    }
    // The server still answers, from another address, while it holds and sheds them.
    assert_eq!(health_from(&served.url, 2).await, 200);
    let (mut answered, mut closed, mut held) = (0, 0, 0);
    for socket in idle {
        let (open_for, received) = socket.await.unwrap();
        if !received.is_empty() {
            assert_early_problem(&parse(&received), 429, "too_many_connections");
            answered += 1;
        } else if open_for >= Duration::from_millis(4900) {
            // Held: it sent nothing, so it is closed after the (5 s) header timeout.
            held += 1;
        } else {
            // Refused while 32 answers were pending: closed without one.
            assert!(open_for < Duration::from_secs(4), "{open_for:?}");
            closed += 1;
        }
    }
    assert_eq!(held, 32);
    assert_eq!(answered + closed, 268);
    assert!(answered >= 32, "{answered}");
    assert_eq!(health_from(&served.url, 1).await, 200);
    assert!(served.terminate().await.success());

    // A cap the descriptors cannot back is refused at start, naming the setting: of 256,
    // 64 + 32 + 3 × 4 + 16 are kept for the process, answers over a cap, the pool and
    // deliveries.
    let mut refused = dms_with_open_files(storage.data_dir(), 256);
    configured(&mut refused);
    refused.env("DMS_MAX_CONNECTIONS", "1000");
    let output = tokio::time::timeout(Duration::from_secs(60), run(refused, &["serve"], None))
        .await
        .expect("dms serve refuses to start");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid setting DMS_MAX_CONNECTIONS: it is 1000, but the open-file limit (256) allows at most 132"),
        "{stderr}"
    );
}

/// The test process opens hundreds of sockets at once, beside the other tests.
fn raise_own_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_time_connections_over_the_user_or_tenant_cap_are_closed_with_4010() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.ws_max_per_user = 2;
        config.ws_max_per_tenant = 3;
    })
    .await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    let (mut first, _) = WsClient::connect(&server.url, &admin.token).await;
    let (_second, _) = WsClient::connect(&server.url, &admin.token).await;
    let mut third = WsClient::try_connect(
        &server.url,
        "/ws",
        &[("authorization", &format!("Bearer {}", admin.token))],
    )
    .await
    .unwrap();
    assert_eq!(
        third.closed().await,
        (
            4010,
            "the user already has 2 live connections on this node, the most allowed (DMS_WS_MAX_PER_USER); close one first".to_owned()
        )
    );
    // Socket.IO counts the same connections and closes the same way.
    let mut sio = SioClient::connect(&server.url, json!({ "token": admin.token })).await;
    assert_eq!(sio.next().await.0, "connect");
    let (event, data) = sio.next().await;
    assert_eq!(
        (event.as_str(), &data["code"]),
        ("close", &json!(4010)),
        "{data}"
    );
    assert_eq!(sio.next().await.0, "disconnect");
    sio.close().await;

    // The tenant holds 3 with bob's first; his second is one too many for the tenant.
    let (_bobs, _) = WsClient::connect(&server.url, &bob.token).await;
    let mut over = WsClient::try_connect(&server.url, &format!("/ws?token={}", bob.token), &[])
        .await
        .unwrap();
    assert_eq!(
        over.closed().await,
        (
            4010,
            "the tenant already has 3 live connections on this node, the most allowed (DMS_WS_MAX_PER_TENANT)".to_owned()
        )
    );
    // Another tenant is not affected.
    let acme = server.tenant_admin("acme").await;
    let (mut elsewhere, _) = WsClient::connect(&server.url, &acme.token).await;
    elsewhere.expect_quiet().await;

    // Closing a connection gives its place back.
    first
        .send_raw(tokio_tungstenite::tungstenite::Message::Close(None))
        .await
        .unwrap();
    eventually("the admin may connect again", || async {
        let mut again =
            WsClient::try_connect(&server.url, &format!("/ws?token={}", admin.token), &[])
                .await
                .unwrap();
        again
            .next_or_close()
            .await
            .is_ok_and(|ready| ready["type"] == "ready")
    })
    .await;
}

/// Opens an Engine.IO session over HTTP long-polling, as a Socket.IO client's first request
/// does; its `sid`, or the refusal.
async fn open_session(url: &str) -> Result<String, (u16, reqwest::header::HeaderMap, Value)> {
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{url}/socket.io/?EIO=4&transport=polling"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    if status != 200 {
        return Err((
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        ));
    }
    // An open packet: `0{"sid":"…",…}`.
    let open: Value = serde_json::from_str(text.trim_start_matches('0')).unwrap();
    Ok(open["sid"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_never_authenticate_are_capped_per_address_and_closed_after_5_s() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.ws_max_unauthenticated_per_address = 2;
    })
    .await;
    let admin = server.admin().await;
    // A socket.io-client without a token is refused, and its session holds a place.
    let mut tokenless = SioClient::connect(&server.url, json!({})).await;
    let (event, data) = tokenless.next().await;
    assert_eq!(event, "connect_error", "{data}");
    let held = open_session(&server.url).await.unwrap();
    let (status, headers, body) = open_session(&server.url).await.unwrap_err();
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(
        body,
        json!({
            "type": "/problems/too_many_connections",
            "title": "Too many connections",
            "status": 429,
            "detail": "127.0.0.1 already has 2 real-time connections waiting to authenticate (DMS_WS_MAX_UNAUTHENTICATED_PER_ADDRESS); send the token with the request, or authenticate those first",
            "code": "too_many_connections",
        })
    );
    // /ws sockets waiting for their auth frame count too: refused before the upgrade.
    let refused = WsClient::try_connect(&server.url, "/ws", &[])
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.body["code"], "too_many_connections");
    // A token sent with the request needs no place.
    let (mut with_token, _) = WsClient::connect(&server.url, &admin.token).await;
    with_token.expect_quiet().await;

    // Unauthenticated sessions end after 5 s, as a /ws socket without its auth frame does. A
    // poll on the held session waits until the server closes it; once closed it is unknown.
    let url = server.url.clone();
    eventually("the held session is closed", || {
        let url = url.clone();
        let held = held.clone();
        async move {
            let poll = reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap()
                .get(format!(
                    "{url}/socket.io/?EIO=4&transport=polling&sid={held}"
                ))
                .send()
                .await
                .unwrap();
            poll.status() == 400
        }
    })
    .await;
    eventually("the closed sessions' places are free", || async {
        open_session(&server.url).await.is_ok()
    })
    .await;
    tokenless.close().await;

    // A session that authenticates gives its place back at once.
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = SioClient::connect(&server.url, json!({ "token": admin.token })).await;
        assert_eq!(client.next().await.0, "connect");
        assert_eq!(client.next().await.0, "ready");
        clients.push(client);
    }
    let mut waiting = WsClient::try_connect(&server.url, "/ws", &[])
        .await
        .unwrap();
    waiting
        .send(json!({ "type": "auth", "token": admin.token }))
        .await;
    assert_eq!(waiting.next().await["type"], "ready");
    for client in clients {
        client.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgraded_websockets_keep_their_place_until_they_close() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.max_connections_per_address = 2;
    })
    .await;
    let admin = server.admin().await;
    let (mut first, _) = WsClient::connect(&server.url, &admin.token).await;
    let (_second, _) = WsClient::connect(&server.url, &admin.token).await;
    // The login's keep-alive connection may still be open: wait for the two sockets alone.
    let admission = server.state.admission.clone();
    eventually("only the two WebSockets are open", || {
        let admission = admission.clone();
        async move { admission.open() == 2 }
    })
    .await;
    let mut over = connect_from(&server.url, 1).await;
    let raw = parse(&until_closed(&mut over, Duration::from_secs(10)).await);
    assert_early_problem(&raw, 429, "too_many_connections");
    first
        .send_raw(tokio_tungstenite::tungstenite::Message::Close(None))
        .await
        .unwrap();
    eventually("the closed WebSocket's place is free", || {
        let admission = admission.clone();
        async move { admission.open() == 1 }
    })
    .await;
    assert_eq!(health_from(&server.url, 1).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_connection_over_the_cap_is_closed_before_the_handshake() {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let server = TestServer::start_with(Backend::Sqlite, move |config| {
        config.tls_cert = cert;
        config.tls_key = key;
        config.max_connections_per_address = 1;
    })
    .await;
    // One connection in its handshake holds the address's place.
    let _handshaking = connect_from(&server.url, 1).await;
    let admission = server.state.admission.clone();
    eventually("the server holds the first connection", || {
        let admission = admission.clone();
        async move { admission.open() == 1 }
    })
    .await;
    // The next one is closed without a byte of TLS.
    let mut over = connect_from(&server.url, 1).await;
    over.write_all(b"\x16\x03\x01").await.ok();
    let received = until_closed(&mut over, Duration::from_secs(5)).await;
    assert!(received.is_empty(), "{received:?}");
    // Another address completes its handshake.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(generated.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(rustls::ALL_VERSIONS)
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            connect_from(&server.url, 2).await,
        )
        .await
        .unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok();
    assert!(
        response.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(&response)
    );
}
