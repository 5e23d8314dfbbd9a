//! The emulator's TLS identity: a local CA and a server certificate for
//! `localhost` and `127.0.0.1` signed by it, kept in a directory so that a
//! user trusts the CA once (`REQUESTS_CA_BUNDLE`, `NODE_EXTRA_CA_CERTS`,
//! twinops' `ca_file`) across restarts.
//!
//! Files: `ca.pem` (the CA certificate to trust), `cert.pem` (the server
//! certificate), `key.pem` (the server key, written owner-only). The CA's
//! key is never written: a new identity is made when any file is missing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::emulator::EmulatorError;

/// The names the server certificate covers.
const NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// Where the identity lives.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The CA certificate to trust.
    pub ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl Identity {
    /// The identity in `directory`, made (with the directory) when any of
    /// its files is missing.
    ///
    /// # Errors
    /// [`EmulatorError::Tls`] when the files cannot be made or written.
    pub fn in_directory(directory: &Path) -> Result<Self, EmulatorError> {
        let identity = Self {
            ca_file: directory.join("ca.pem"),
            cert_file: directory.join("cert.pem"),
            key_file: directory.join("key.pem"),
        };
        if !(identity.ca_file.is_file()
            && identity.cert_file.is_file()
            && identity.key_file.is_file())
        {
            identity.generate(directory)?;
        }
        Ok(identity)
    }

    fn generate(&self, directory: &Path) -> Result<(), EmulatorError> {
        let failed = |what: &str, error: &dyn std::fmt::Display| EmulatorError::Tls {
            reason: format!("cannot {what}: {error}"),
        };
        let ca_key = KeyPair::generate().map_err(|error| failed("make a key", &error))?;
        let mut ca = CertificateParams::new(Vec::<String>::new())
            .map_err(|error| failed("make the CA", &error))?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(DnType::CommonName, "twinops hub emulator CA");
        let ca_certificate = ca
            .self_signed(&ca_key)
            .map_err(|error| failed("sign the CA", &error))?;
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate().map_err(|error| failed("make a key", &error))?;
        let mut server = CertificateParams::new(NAMES.map(str::to_owned).to_vec())
            .map_err(|error| failed("make the server certificate", &error))?;
        server
            .distinguished_name
            .push(DnType::CommonName, "twinops hub emulator");
        server.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let certificate = server
            .signed_by(&key, &issuer)
            .map_err(|error| failed("sign the server certificate", &error))?;

        std::fs::create_dir_all(directory)
            .map_err(|error| failed(&format!("create `{}`", directory.display()), &error))?;
        write_private(&self.key_file, key.serialize_pem().as_bytes())
            .map_err(|error| failed(&format!("write `{}`", self.key_file.display()), &error))?;
        std::fs::write(&self.cert_file, certificate.pem())
            .map_err(|error| failed(&format!("write `{}`", self.cert_file.display()), &error))?;
        std::fs::write(&self.ca_file, ca_certificate.pem())
            .map_err(|error| failed(&format!("write `{}`", self.ca_file.display()), &error))?;
        Ok(())
    }

    /// A TLS server configuration serving the certificate.
    ///
    /// # Errors
    /// [`EmulatorError::Tls`] when the files cannot be read or used.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, EmulatorError> {
        let failed = |file: &Path, error: &dyn std::fmt::Display| EmulatorError::Tls {
            reason: format!("`{}`: {error}", file.display()),
        };
        let chain = CertificateDer::pem_file_iter(&self.cert_file)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|error| failed(&self.cert_file, &error))?;
        let key = PrivateKeyDer::from_pem_file(&self.key_file)
            .map_err(|error| failed(&self.key_file, &error))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
            .map_err(|error| failed(&self.cert_file, &error))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}
