//! The TLS client of HTTPS health checks (rustls): the roots it trusts (`ca`, else the
//! system's bundle), the name it asks for and verifies (`sni`, else the backend's address),
//! or no verification at all (`verify = false`: the probe then proves TLS and HTTP work, not
//! who answers).
use std::{net::SocketAddr, sync::Arc};

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, ring},
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};

use crate::config::Health;

/// Where Debian (and others) keep the system's trusted certificates.
const SYSTEM_ROOTS: [&str; 2] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// The connector for `h`, or why it cannot be built (its roots unreadable).
pub fn connector(h: &Health) -> Result<tokio_rustls::TlsConnector, String> {
    // ring's provider, deprecated for its lack of post-quantum key exchange: a health probe
    // carries no secret worth a future decryption, and aws-lc-rs would add cmake and a C
    // toolchain to every build of lb.
    #[allow(deprecated)]
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let config = if h.verify {
        let mut roots = RootCertStore::empty();
        let files: Vec<std::path::PathBuf> = match &h.ca {
            Some(ca) => vec![ca.clone()],
            None => SYSTEM_ROOTS
                .iter()
                .map(std::path::PathBuf::from)
                .filter(|p| p.exists())
                .take(1)
                .collect(),
        };
        for file in &files {
            let certs = CertificateDer::pem_file_iter(file)
                .map_err(|e| format!("reading {}: {e}", file.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("reading {}: {e}", file.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("a certificate of {}: {e}", file.display()))?;
            }
        }
        if roots.is_empty() {
            return Err("no trusted certificates (set vip.health.ca)".into());
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The name asked for and verified: `sni`, else the backend's address.
pub fn server_name(h: &Health, target: SocketAddr) -> ServerName<'static> {
    match &h.sni {
        Some(name) => ServerName::try_from(name.clone())
            .unwrap_or_else(|_| ServerName::IpAddress(target.ip().into())),
        None => ServerName::IpAddress(target.ip().into()),
    }
}

/// `verify = false`: any certificate, its handshake signatures still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
