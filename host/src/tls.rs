//! TLS 1.3 termination for `dms serve` when `DMS_TLS_CERT` and `DMS_TLS_KEY` are set: the
//! rustls server configuration (TLS 1.3 only, HTTP/1.1 by ALPN), and a listener that runs
//! handshakes beside the accept loop, so a slow or silent client delays only itself. The
//! connection caps apply at the TCP accept, before the handshake: a connection over a cap is
//! closed at once (a handshake would cost what the cap is there to save).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::connections::{Accept, Accepted, Admission, Permit, accept_tcp};

/// How long a client may take to finish its handshake. Generous for real clients on slow
/// links; short enough that idle half-open connections do not pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections whose handshake finished, waiting for the server to take them. Beyond this the
/// handshake tasks wait, which slows clients down instead of buffering without bound.
const READY_QUEUE: usize = 1024;

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds no usable item.
    #[error("{setting} ({path}): {reason}")]
    File {
        /// The setting naming the file.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the certificate and key (they do not match, or the key type is not
    /// supported).
    #[error("DMS_TLS_CERT and DMS_TLS_KEY cannot be used together: {0}")]
    Config(#[from] rustls::Error),
}

/// The server configuration for the certificate chain at `cert` and the private key at `key`
/// (PEM files).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let file_error = |setting, path: &Path, reason: String| TlsError::File {
        setting,
        path: path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|error| file_error("DMS_TLS_CERT", cert, error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| file_error("DMS_TLS_CERT", cert, error.to_string()))?;
    if chain.is_empty() {
        return Err(file_error(
            "DMS_TLS_CERT",
            cert,
            "no PEM certificate in the file".into(),
        ));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|error| {
        file_error(
            "DMS_TLS_KEY",
            key,
            format!("no usable PEM private key ({error})"),
        )
    })?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_no_client_auth()
    .with_single_cert(chain, key_der)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A connection whose handshake finished.
type Ready = (TlsStream<TcpStream>, SocketAddr, Permit);

/// A listener that hands out TLS streams. Dropping it stops accepting.
pub struct TlsListener {
    ready: mpsc::Receiver<Ready>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl TlsListener {
    /// Accepts on `listener` the connections `admission` admits, and performs handshakes
    /// with `config`.
    pub fn new(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        admission: Arc<Admission>,
    ) -> Self {
        let (sender, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = tokio::spawn(accept(
            listener,
            TlsAcceptor::from(config),
            admission,
            sender,
        ));
        Self { ready, acceptor }
    }
}

async fn accept(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    admission: Arc<Admission>,
    ready: mpsc::Sender<Ready>,
) {
    loop {
        let (stream, peer) = accept_tcp(&listener).await;
        // Over a cap: dropping the stream closes it.
        let Ok(permit) = admission.admit(peer.ip()) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let _ = ready.send((stream, peer, permit)).await;
                }
                Ok(Err(error)) => {
                    tracing::debug!(message = "TLS handshake failed.", %peer, %error);
                }
                Err(_) => {
                    tracing::debug!(message = "TLS handshake timed out.", %peer);
                }
            }
        });
    }
}

impl Accept for TlsListener {
    type Io = TlsStream<TcpStream>;

    async fn accept(&mut self) -> Accepted<Self::Io> {
        match self.ready.recv().await {
            Some((io, peer, permit)) => Accepted { io, peer, permit },
            // The acceptor task only ends when aborted, which only our Drop does.
            None => std::future::pending().await,
        }
    }
}
