//! HTTPS for environments: an SNI resolver that picks an environment's certificate by the
//! host name the client asks for, PEM pair validation for `morel certs add`, and a TLS
//! listener that serves the same router as the plain one. rustls with the `ring` provider.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Certificates by host name. Written by the control plane (certificate added, environment
/// removed), read by every TLS handshake.
#[derive(Default)]
pub struct CertResolver {
    by_host: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.by_host.read().map(|m| m.len()).unwrap_or(0);
        write!(f, "CertResolver({n} hosts)")
    }
}

impl CertResolver {
    pub fn set(&self, hosts: &[String], key: Arc<CertifiedKey>) {
        let mut map = self.by_host.write().unwrap_or_else(|e| e.into_inner());
        for h in hosts {
            map.insert(h.to_ascii_lowercase(), key.clone());
        }
    }

    pub fn remove(&self, hosts: &[String]) {
        let mut map = self.by_host.write().unwrap_or_else(|e| e.into_inner());
        for h in hosts {
            map.remove(&h.to_ascii_lowercase());
        }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?.to_ascii_lowercase();
        let map = self.by_host.read().unwrap_or_else(|e| e.into_inner());
        map.get(&name).cloned()
    }
}

/// Parses a PEM certificate chain and private key and checks that they belong together.
/// The error says what is wrong, for the API's 400.
pub fn parse_pair(cert_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the certificate is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("the certificate file holds no PEM CERTIFICATE block".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("the key file holds no usable PEM private key: {e}"))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("the private key is not a supported type: {e}"))?;
    let certified = CertifiedKey::new(certs, signer);
    match certified.keys_match() {
        Ok(()) => Ok(Arc::new(certified)),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(rustls::Error::InconsistentKeys(_)) => {
            Err("the private key does not match the certificate".into())
        }
        Err(e) => Err(format!("the certificate cannot be used: {e}")),
    }
}

/// Checks that a certificate's leaf is valid for every host name it is to serve.
pub fn check_hosts(certified: &CertifiedKey, hosts: &[String]) -> Result<(), String> {
    let Some(leaf) = certified.cert.first() else {
        return Err("the certificate chain is empty".into());
    };
    let cert = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| format!("the certificate cannot be parsed: {e:?}"))?;
    for host in hosts {
        let name = rustls_pki_types::ServerName::try_from(host.as_str())
            .map_err(|e| format!("{host} is not a valid host name: {e}"))?;
        cert.verify_is_valid_for_subject_name(&name)
            .map_err(|_| format!("the certificate is not valid for {host}"))?;
    }
    Ok(())
}

/// A TLS listener for `axum::serve`: TCP connections are accepted at once and their
/// handshakes run concurrently, so a slow client does not hold up the others.
pub struct TlsListener {
    local: std::net::SocketAddr,
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, std::net::SocketAddr)>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, resolver: Arc<CertResolver>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { local, rx })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop ended: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Serves `router` over TLS until `shutdown` resolves.
pub async fn serve_tls(
    listener: TcpListener,
    router: axum::Router,
    resolver: Arc<CertResolver>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = TlsListener::new(listener, resolver)?;
    // Bodies are bounded here as on every listener (`listen::serve`).
    let router = router.layer(axum::middleware::from_fn(morel_gateway::limit_body_pauses));
    axum::serve(tls, router.into_make_service())
        .with_graceful_shutdown(shutdown)
        .await
}
