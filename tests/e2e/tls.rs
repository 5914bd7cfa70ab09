//! TLS: with `DMS_TLS_CERT` and `DMS_TLS_KEY`, the server speaks TLS 1.3 only — HTTPS and
//! WebSocket upgrades over it — with a certificate generated for the test; bad settings stop
//! the start with a message naming the setting.

use std::path::PathBuf;
use std::sync::Arc;

use dms::clock::Clock;
use dms::state::{AppState, StartError};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::{Backend, TestServer};

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files.
struct Certificate {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
    pem: String,
}

fn certificate() -> Certificate {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let pem = generated.cert.pem();
    std::fs::write(&cert, &pem).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    Certificate {
        der: generated.cert.der().clone(),
        _dir: dir,
        cert,
        key,
        pem,
    }
}

fn client(
    certificate: &Certificate,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate.der.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn tls_server(certificate: &Certificate) -> (TestServer, String) {
    let (cert, key) = (certificate.cert.clone(), certificate.key.clone());
    let server = TestServer::start_with(Backend::Sqlite, move |config| {
        config.tls_cert = cert;
        config.tls_key = key;
    })
    .await;
    let address = server.url.trim_start_matches("http://").to_owned();
    (server, address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_is_tls_1_3_and_https_and_wss_work() {
    let certificate = certificate();
    let (server, address) = tls_server(&certificate).await;

    // A raw handshake: TLS 1.3, HTTP/1.1 by ALPN, and a request over it.
    let tcp = tokio::net::TcpStream::connect(&address).await.unwrap();
    let mut stream = client(&certificate, rustls::ALL_VERSIONS)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the handshake succeeds");
    let (_, connection) = stream.get_ref();
    assert_eq!(
        connection.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // An ordinary HTTPS client that trusts the certificate.
    let https = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(certificate.pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = format!("https://localhost:{}", address.rsplit(':').next().unwrap());
    let health = https.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let login = https
        .post(format!("{url}/auth/login"))
        .json(
            &serde_json::json!({ "username": "admin", "password": crate::harness::ADMIN_PASSWORD }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let token = login.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Over TLS the console's cookies are `Secure` as well as HttpOnly and strict.
    let form = https
        .get(format!("{url}/console/login"))
        .send()
        .await
        .unwrap();
    let set_cookies: Vec<String> = form
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .collect();
    let csrf = set_cookies
        .iter()
        .find_map(|cookie| cookie.strip_prefix("dms_csrf="))
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_owned();
    assert!(set_cookies[0].contains("; Secure"), "{set_cookies:?}");
    let signed_in = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(reqwest::Certificate::from_pem(certificate.pem.as_bytes()).unwrap())
        .build()
        .unwrap()
        .post(format!("{url}/console/login"))
        .header(reqwest::header::COOKIE, format!("dms_csrf={csrf}"))
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(
            serde_urlencoded::to_string([
                ("username", "admin"),
                ("password", crate::harness::ADMIN_PASSWORD),
                ("csrf", csrf.as_str()),
            ])
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let session_cookies: Vec<&str> = signed_in
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect();
    assert_eq!(session_cookies.len(), 3, "{session_cookies:?}");
    for cookie in session_cookies {
        assert!(cookie.contains("; Secure"), "{cookie}");
        assert!(cookie.contains("SameSite=Strict"), "{cookie}");
        if !cookie.starts_with("dms_csrf=") {
            assert!(cookie.contains("HttpOnly"), "{cookie}");
        }
    }

    // A WebSocket upgrade over TLS (wss://).
    let tcp = tokio::net::TcpStream::connect(&address).await.unwrap();
    let tls = client(&certificate, rustls::ALL_VERSIONS)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut request = format!("wss://localhost/ws?token={token}")
        .into_client_request()
        .unwrap();
    request.headers_mut().remove("origin");
    let (mut socket, response) = tokio_tungstenite::client_async(request, tls)
        .await
        .expect("the WebSocket upgrade works over TLS");
    assert_eq!(response.status(), 101);
    use futures_util::StreamExt as _;
    let first = socket.next().await.unwrap().unwrap();
    let ready: serde_json::Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(ready["type"], "ready");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_1_2_client_and_a_plain_http_client_are_refused() {
    let certificate = certificate();
    let (server, address) = tls_server(&certificate).await;

    let tcp = tokio::net::TcpStream::connect(&address).await.unwrap();
    let refused = client(&certificate, &[&rustls::version::TLS12])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect_err("the server speaks TLS 1.3 only");
    assert!(
        refused.to_string().to_lowercase().contains("protocol")
            || refused.to_string().to_lowercase().contains("version"),
        "{refused}"
    );

    let plain = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{address}/health"))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP gets no answer: {plain:?}");

    // The server is still serving TLS clients after both.
    let tcp = tokio::net::TcpStream::connect(&address).await.unwrap();
    client(&certificate, rustls::ALL_VERSIONS)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("still serving");
    drop(server);
}

#[tokio::test]
async fn bad_tls_settings_stop_the_start_and_name_the_setting() {
    let certificate = certificate();
    let dir = tempfile::tempdir().unwrap();
    let config = |cert: PathBuf, key: PathBuf| dms::config::Config {
        data_dir: dir.path().to_path_buf(),
        tls_cert: cert,
        tls_key: key,
        ..dms::config::Config::defaults()
    };

    let only_cert = config(certificate.cert.clone(), PathBuf::new());
    let error = only_cert.validate().unwrap_err().to_string();
    assert!(error.contains("DMS_TLS_KEY"), "{error}");
    assert!(error.contains("set both"), "{error}");

    let missing = dir.path().join("missing.pem");
    let start = |config| async { AppState::build(config, Clock::System).await.map(|_| ()) };
    let Err(StartError::Tls(error)) = start(config(missing.clone(), certificate.key.clone())).await
    else {
        panic!("a missing certificate file stops the start");
    };
    let text = error.to_string();
    assert!(text.starts_with("DMS_TLS_CERT ("), "{text}");
    assert!(text.contains("missing.pem"), "{text}");

    // The certificate where the key should be.
    let Err(StartError::Tls(error)) =
        start(config(certificate.cert.clone(), certificate.cert.clone())).await
    else {
        panic!("a key file without a key stops the start");
    };
    assert!(error.to_string().starts_with("DMS_TLS_KEY ("), "{error}");

    // A key that is not the certificate's.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let other_key = dir.path().join("other-key.pem");
    std::fs::write(&other_key, other.signing_key.serialize_pem()).unwrap();
    let Err(StartError::Tls(error)) = start(config(certificate.cert.clone(), other_key)).await
    else {
        panic!("a key that does not match stops the start");
    };
    assert!(
        error
            .to_string()
            .starts_with("DMS_TLS_CERT and DMS_TLS_KEY cannot be used together"),
        "{error}"
    );
}
