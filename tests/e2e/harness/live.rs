//! Real-time clients: a WebSocket client for `/ws` (tokio-tungstenite) and the npm
//! `socket.io-client` driven through `tests/e2e/js/sio-client.mjs`.

use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for a frame it expects.
const WAIT: Duration = Duration::from_secs(15);

/// A `/ws` client.
pub(crate) struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a connection attempt ended before the upgrade.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) body: Value,
}

impl WsClient {
    /// Connects to `base` + `path_and_query` with extra request headers.
    pub(crate) async fn try_connect(
        base: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Self, Refused> {
        let url = format!("{}{path_and_query}", base.replacen("http://", "ws://", 1));
        let mut request = url.into_client_request().unwrap();
        for (name, value) in headers {
            request.headers_mut().insert(
                tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((stream, _)) => Ok(Self { stream }),
            Err(tungstenite::Error::Http(response)) => Err(Refused {
                status: response.status().as_u16(),
                content_type: response
                    .headers()
                    .get("content-type")
                    .map(|value| value.to_str().unwrap().to_owned())
                    .unwrap_or_default(),
                body: response
                    .body()
                    .as_ref()
                    .and_then(|body| serde_json::from_slice(body).ok())
                    .unwrap_or(Value::Null),
            }),
            Err(error) => panic!("could not connect: {error}"),
        }
    }

    /// Connects with a bearer token and reads the `ready` frame.
    pub(crate) async fn connect(base: &str, token: &str) -> (Self, Value) {
        Self::connect_at(base, "/ws", token).await
    }

    /// Like [`connect`](Self::connect), at `path_and_query`.
    pub(crate) async fn connect_at(base: &str, path_and_query: &str, token: &str) -> (Self, Value) {
        let bearer = format!("Bearer {token}");
        let mut client = Self::try_connect(base, path_and_query, &[("authorization", &bearer)])
            .await
            .unwrap_or_else(|refused| panic!("refused: {refused:?}"));
        let ready = client.next().await;
        assert_eq!(ready["type"], "ready", "{ready}");
        (client, ready)
    }

    /// Sends a JSON frame.
    pub(crate) async fn send(&mut self, frame: Value) {
        self.stream
            .send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
    }

    /// Sends a raw message.
    pub(crate) async fn send_raw(&mut self, message: Message) -> Result<(), tungstenite::Error> {
        self.stream.send(message).await
    }

    /// The next JSON frame (panics on a close or after the wait).
    pub(crate) async fn next(&mut self) -> Value {
        match self.next_or_close().await {
            Ok(frame) => frame,
            Err((code, reason)) => panic!("closed with {code}: {reason}"),
        }
    }

    /// The next JSON frame, or the close code and reason.
    pub(crate) async fn next_or_close(&mut self) -> Result<Value, (u16, String)> {
        loop {
            let message = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("a frame within the wait");
            match message {
                Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text).unwrap()),
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Err((u16::from(frame.code), frame.reason.to_string()));
                }
                Some(Ok(Message::Close(None))) | None => {
                    return Err((u16::from(CloseCode::Status), String::new()));
                }
                Some(Ok(_)) => continue,
                Some(Err(error)) => return Err((0, error.to_string())),
            }
        }
    }

    /// Reads until the server closes; the close code and reason.
    pub(crate) async fn closed(&mut self) -> (u16, String) {
        loop {
            if let Err(close) = self.next_or_close().await {
                return close;
            }
        }
    }

    /// Sends a ping frame of the protocol and expects the `pong`: proof that nothing else is
    /// queued before it.
    pub(crate) async fn expect_quiet(&mut self) {
        self.send(serde_json::json!({ "type": "ping" })).await;
        let next = self.next().await;
        assert_eq!(next["type"], "pong", "expected nothing more, got {next}");
    }
}

/// A `socket.io-client` 4 in a Node.js process: commands go in as JSON lines, every event
/// it receives comes out as a JSON line `{"event": name, "data": …}`.
pub(crate) struct SioClient {
    child: Child,
    input: ChildStdin,
    output: Lines<BufReader<ChildStdout>>,
}

impl SioClient {
    /// Connects to `base` with the handshake `auth`.
    pub(crate) async fn connect(base: &str, auth: Value) -> Self {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/e2e/js/sio-client.mjs"
        );
        let mut child = Command::new("node")
            .arg(script)
            .arg(base)
            .arg(auth.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node is installed");
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            input,
            output,
        }
    }

    /// The next event: `(name, data)`.
    pub(crate) async fn next(&mut self) -> (String, Value) {
        let line = tokio::time::timeout(WAIT, self.output.next_line())
            .await
            .expect("an event within the wait")
            .unwrap()
            .expect("the client is running");
        let event: Value = serde_json::from_str(&line).unwrap();
        (
            event["event"].as_str().unwrap().to_owned(),
            event["data"].clone(),
        )
    }

    /// Emits `event` with `data`.
    pub(crate) async fn emit(&mut self, event: &str, data: Value) {
        let line = serde_json::json!({ "emit": event, "data": data }).to_string() + "\n";
        self.input.write_all(line.as_bytes()).await.unwrap();
    }

    /// Disconnects and waits for the process to end.
    pub(crate) async fn close(mut self) {
        drop(self.input);
        let _ = tokio::time::timeout(WAIT, self.child.wait()).await;
    }
}
