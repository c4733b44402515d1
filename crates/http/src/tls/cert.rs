//! Certificates for the server: a self-signed one made at start, or a chain and key read
//! from PEM files; and the SHA-256 fingerprint of a certificate, as `openssl x509
//! -fingerprint -sha256` prints it.

use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;
use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A self-signed certificate and its private key.
#[derive(Debug)]
pub struct SelfSigned {
    /// The certificate (DER).
    pub cert: CertificateDer<'static>,
    /// Its private key (PKCS #8 DER, ECDSA P-256).
    pub key: PrivatePkcs8KeyDer<'static>,
    /// The certificate in PEM, for a client's `--cacert`.
    pub cert_pem: String,
    /// The private key in PEM (PKCS #8).
    pub key_pem: String,
    /// The names it is valid for: IP addresses as `iPAddress`, the rest as `dNSName`
    /// subject alternative names (RFC 5280 §4.2.1.6).
    pub names: Vec<String>,
}

impl SelfSigned {
    /// A new key pair and a self-signed certificate for `names` (at least one).
    pub fn generate(names: &[String]) -> io::Result<SelfSigned> {
        Self::generate_with(names, &rcgen::PKCS_ECDSA_P256_SHA256, None)
    }

    /// As [`generate`](Self::generate), with an Ed25519 key and serial number 1: its
    /// signatures (RFC 8032) are deterministic and all of one size, so every handshake made
    /// with it has the same bytes count, as a reproducible run on a simulated network needs
    /// (ECDSA signatures differ in length from one handshake to the next).
    pub fn generate_ed25519(names: &[String]) -> io::Result<SelfSigned> {
        Self::generate_with(names, &rcgen::PKCS_ED25519, Some(1))
    }

    fn generate_with(
        names: &[String],
        alg: &'static rcgen::SignatureAlgorithm,
        serial: Option<u64>,
    ) -> io::Result<SelfSigned> {
        if names.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a certificate needs at least one name",
            ));
        }
        let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(invalid)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0].clone());
        if let Some(n) = serial {
            params.serial_number = Some(rcgen::SerialNumber::from(n));
        }
        let key = rcgen::KeyPair::generate_for(alg).map_err(invalid)?;
        let cert = params.self_signed(&key).map_err(invalid)?;
        Ok(SelfSigned {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            names: names.to_vec(),
        })
    }

    /// A certificate for a server listening on `addr`: the address itself, and
    /// `localhost` too for a loopback or unspecified address.
    pub fn for_addr(addr: IpAddr) -> io::Result<SelfSigned> {
        let mut names = Vec::new();
        if addr.is_unspecified() {
            names.push(
                match addr {
                    IpAddr::V4(_) => "127.0.0.1",
                    IpAddr::V6(_) => "::1",
                }
                .to_owned(),
            );
        } else {
            names.push(addr.to_string());
        }
        if addr.is_loopback() || addr.is_unspecified() {
            names.push("localhost".to_owned());
        }
        SelfSigned::generate(&names)
    }

    /// The certificate's SHA-256 fingerprint.
    pub fn fingerprint(&self) -> String {
        fingerprint_sha256(&self.cert)
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// The SHA-256 digest of `der` as colon-separated upper-case hex (`AB:CD:...`), the form
/// `openssl x509 -fingerprint -sha256` and browsers show.
pub fn fingerprint_sha256(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut s = String::with_capacity(95);
    for (i, b) in digest.as_ref().iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{b:02X}");
    }
    s
}

/// The certificate chain in `cert` (PEM, leaf first) and the private key in `key` (PEM:
/// PKCS #8, PKCS #1 or SEC1). A file without any, or that does not parse, is an error that
/// names it.
pub fn load_pem(
    cert: &Path,
    key: &Path,
) -> io::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let named = |p: &Path, e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", p.display()))
    };
    let cert_bytes = std::fs::read(cert)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", cert.display())))?;
    let chain = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| named(cert, &e))?;
    if chain.is_empty() {
        return Err(named(cert, &"no CERTIFICATE in the file"));
    }
    let key_bytes = std::fs::read(key)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", key.display())))?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| named(key, &e))?;
    Ok((chain, key_der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_sha256_in_colon_hex() {
        // SHA-256 of the empty string.
        assert_eq!(
            fingerprint_sha256(b""),
            "E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:\
             27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55"
        );
    }

    #[test]
    fn a_certificate_for_an_address_names_it_and_round_trips_through_pem() {
        let c = SelfSigned::for_addr("127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(c.names, ["127.0.0.1", "localhost"]);
        assert_eq!(c.fingerprint().len(), 32 * 3 - 1);
        let dir = std::env::temp_dir().join(format!("synack-cert-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cp, kp) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&cp, &c.cert_pem).unwrap();
        std::fs::write(&kp, &c.key_pem).unwrap();
        let (chain, key) = load_pem(&cp, &kp).unwrap();
        assert_eq!(chain, vec![c.cert.clone()]);
        assert_eq!(key.secret_der(), c.key.secret_pkcs8_der());
        // A key file given as the certificate: an error naming the file.
        let e = load_pem(&kp, &kp).unwrap_err();
        assert!(e.to_string().contains("k.pem"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
