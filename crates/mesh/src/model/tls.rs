//! TLS as App Mesh configures it, for virtual nodes (and, later, virtual gateways): a
//! listener's certificate and mode, the validation of peers' certificates, and the
//! client policy of backends.

use super::{length, one_of, range};
use crate::ApiError;
use serde::{Deserialize, Serialize};

/// `ClientPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientPolicy {
    /// `tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientPolicyTls>,
}

/// `ClientPolicyTls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientPolicyTls {
    /// `certificate`: the client's certificate (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<TlsCertificate>,
    /// `enforce` (App Mesh's default: true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce: Option<bool>,
    /// `ports`: the ports it applies to (none: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u32>,
    /// `validation`.
    pub validation: TlsValidationContext,
}

/// `ClientTlsCertificate` and `ListenerTlsCertificate` (which alone has `acm`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsCertificate {
    /// `acm` (listeners only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acm: Option<AcmCertificate>,
    /// `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileCertificate>,
    /// `sds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sds: Option<SdsSecret>,
}

/// `ListenerTlsAcmCertificate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcmCertificate {
    /// `certificateArn`.
    pub certificate_arn: String,
}

/// `ListenerTlsFileCertificate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileCertificate {
    /// `certificateChain` (a file path, 1–255 characters).
    pub certificate_chain: String,
    /// `privateKey` (a file path).
    pub private_key: String,
}

/// `ListenerTlsSdsCertificate`, `TlsValidationContextSdsTrust`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SdsSecret {
    /// `secretName`.
    pub secret_name: String,
}

/// `TlsValidationContext`, `ListenerTlsValidationContext` (whose trust has no `acm`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsValidationContext {
    /// `subjectAlternativeNames`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_alternative_names: Option<SubjectAlternativeNames>,
    /// `trust`.
    pub trust: TlsValidationTrust,
}

/// `SubjectAlternativeNames`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubjectAlternativeNames {
    /// `match`.
    #[serde(rename = "match")]
    pub matchers: SubjectAlternativeNameMatchers,
}

/// `SubjectAlternativeNameMatchers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubjectAlternativeNameMatchers {
    /// `exact`.
    pub exact: Vec<String>,
}

/// `TlsValidationContextTrust`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsValidationTrust {
    /// `acm` (clients only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acm: Option<AcmTrust>,
    /// `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileTrust>,
    /// `sds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sds: Option<SdsSecret>,
}

/// `TlsValidationContextAcmTrust`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcmTrust {
    /// `certificateAuthorityArns` (1–3).
    pub certificate_authority_arns: Vec<String>,
}

/// `TlsValidationContextFileTrust`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileTrust {
    /// `certificateChain`.
    pub certificate_chain: String,
}

/// `ListenerTls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerTls {
    /// `certificate`.
    pub certificate: TlsCertificate,
    /// `mode`.
    pub mode: ListenerTlsMode,
    /// `validation`: the clients' certificates (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<TlsValidationContext>,
}

/// `ListenerTlsMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ListenerTlsMode {
    /// `STRICT`: TLS only.
    Strict,
    /// `PERMISSIVE`: TLS or plain text.
    Permissive,
    /// `DISABLED`.
    Disabled,
}

impl TlsCertificate {
    /// Checks it (`acm_allowed`: a listener's); `field` is its path.
    pub(crate) fn validate(&self, field: &str, acm_allowed: bool) -> Result<(), ApiError> {
        let mut members = vec![("file", self.file.is_some()), ("sds", self.sds.is_some())];
        if acm_allowed || self.acm.is_some() {
            members.insert(0, ("acm", self.acm.is_some()));
        }
        if !acm_allowed && self.acm.is_some() {
            return Err(ApiError::bad_request(format!(
                "{field}.acm: a client certificate is a file or an SDS secret"
            )));
        }
        one_of(field, &members)?;
        if let Some(f) = &self.file {
            length(
                &f.certificate_chain,
                1,
                255,
                &format!("{field}.file.certificateChain"),
            )?;
            length(&f.private_key, 1, 255, &format!("{field}.file.privateKey"))?;
        }
        Ok(())
    }
}

impl TlsValidationContext {
    /// Checks it (`acm_allowed`: a client's trust); `field` is its path.
    pub(crate) fn validate(&self, field: &str, acm_allowed: bool) -> Result<(), ApiError> {
        let t = &self.trust;
        let at = format!("{field}.trust");
        if !acm_allowed && t.acm.is_some() {
            return Err(ApiError::bad_request(format!(
                "{at}.acm: a listener trusts a file or an SDS secret"
            )));
        }
        one_of(
            &at,
            &[
                ("acm", t.acm.is_some()),
                ("file", t.file.is_some()),
                ("sds", t.sds.is_some()),
            ],
        )?;
        if let Some(acm) = &t.acm {
            let n = acm.certificate_authority_arns.len() as u64;
            range(
                n,
                1,
                3,
                &format!("{at}.acm.certificateAuthorityArns (count)"),
            )?;
        }
        if let Some(f) = &t.file {
            length(
                &f.certificate_chain,
                1,
                255,
                &format!("{at}.file.certificateChain"),
            )?;
        }
        if let Some(san) = &self.subject_alternative_names {
            for (i, name) in san.matchers.exact.iter().enumerate() {
                let field = format!("{field}.subjectAlternativeNames.match.exact[{i}]");
                length(name, 1, 254, &field)?;
            }
        }
        Ok(())
    }
}

impl ListenerTls {
    /// Checks it; `field` is its path.
    pub(crate) fn validate(&self, field: &str) -> Result<(), ApiError> {
        self.certificate
            .validate(&format!("{field}.certificate"), true)?;
        if let Some(v) = &self.validation {
            v.validate(&format!("{field}.validation"), false)?;
        }
        Ok(())
    }
}

impl ClientPolicy {
    /// Checks it; `field` is its path.
    pub(crate) fn validate(&self, field: &str) -> Result<(), ApiError> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        if let Some(c) = &tls.certificate {
            c.validate(&format!("{field}.tls.certificate"), false)?;
        }
        for (i, p) in tls.ports.iter().enumerate() {
            range(u64::from(*p), 1, 65535, &format!("{field}.tls.ports[{i}]"))?;
        }
        tls.validation
            .validate(&format!("{field}.tls.validation"), true)
    }
}
