//! The file as written: the serde model, with spans kept for error messages.
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::*;

// The file as written. Spanned fields keep their place in the text for error messages.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) agent: Spanned<RawAgent>,
    #[serde(default)]
    pub(super) vip: Vec<Spanned<RawVip>>,
    pub(super) bgp: Option<Spanned<RawBgp>>,
    pub(super) discovery: Option<RawDiscovery>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDiscovery {
    pub(super) etcd: Option<Spanned<RawEtcd>>,
    pub(super) dns: Option<RawDns>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    pub(super) servers: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEtcd {
    pub(super) endpoints: Spanned<Vec<Spanned<String>>>,
    pub(super) prefix: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBgp {
    pub(super) bird_socket: Option<Spanned<String>>,
    pub(super) routes_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgent {
    pub(super) interfaces: Spanned<Vec<Spanned<String>>>,
    pub(super) xdp_mode: Option<Spanned<String>>,
    pub(super) instance: Option<Spanned<String>>,
    pub(super) socket: Option<Spanned<String>>,
    pub(super) state_dir: Option<Spanned<String>>,
    pub(super) pin_dir: Option<Spanned<String>>,
    pub(super) flow_table_size: Option<Spanned<i64>>,
    pub(super) metrics: Option<Spanned<String>>,
    pub(super) source_v4: Option<Spanned<String>>,
    pub(super) source_v6: Option<Spanned<String>>,
    pub(super) path_mtu: Option<Spanned<i64>>,
    pub(super) flow_active: Option<Spanned<String>>,
    pub(super) answer_echo: Option<Spanned<bool>>,
    pub(super) unbalanced: Option<Spanned<String>>,
    pub(super) source_v4_prefix: Option<Spanned<String>>,
    pub(super) source_v6_prefix: Option<Spanned<String>>,
    pub(super) tcp_idle: Option<Spanned<String>>,
    pub(super) gue_port: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVip {
    pub(super) name: Spanned<String>,
    pub(super) address: Spanned<String>,
    pub(super) protocol: Option<Spanned<String>>,
    pub(super) forwarding: Option<Spanned<String>>,
    pub(super) ring_size: Option<Spanned<i64>>,
    pub(super) udp_idle: Option<Spanned<String>>,
    pub(super) fragments: Option<Spanned<bool>>,
    pub(super) on_down: Option<Spanned<String>>,
    pub(super) health: Option<Spanned<RawHealth>>,
    pub(super) hash: Option<Spanned<String>>,
    pub(super) affinity_prefix_v4: Option<Spanned<i64>>,
    pub(super) affinity_prefix_v6: Option<Spanned<i64>>,
    pub(super) acl: Option<Spanned<RawAcl>>,
    pub(super) limits: Option<Spanned<RawLimits>>,
    pub(super) outlier: Option<Spanned<RawOutlier>>,
    #[serde(default)]
    pub(super) backend: Vec<Spanned<RawBackend>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAcl {
    #[serde(default)]
    pub(super) allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) deny: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) new_flows_per_source: Spanned<i64>,
    pub(super) burst: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutlier {
    pub(super) interval: Option<Spanned<String>>,
    pub(super) retry_percent: Option<Spanned<i64>>,
    pub(super) min_flows: Option<Spanned<i64>>,
    pub(super) base_ejection_time: Option<Spanned<String>>,
    pub(super) max_ejection_time: Option<Spanned<String>>,
    pub(super) max_ejection_percent: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub(super) kind: Option<Spanned<String>>,
    pub(super) via: Option<Spanned<String>>,
    pub(super) port: Option<Spanned<i64>>,
    pub(super) path: Option<Spanned<String>>,
    pub(super) expect_status: Option<Spanned<i64>>,
    pub(super) interval: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) rise: Option<Spanned<i64>>,
    pub(super) fall: Option<Spanned<i64>>,
    pub(super) damping: Option<Spanned<bool>>,
    pub(super) body: Option<Spanned<String>>,
    pub(super) sni: Option<Spanned<String>>,
    pub(super) verify: Option<Spanned<bool>>,
    pub(super) ca: Option<Spanned<String>>,
    pub(super) send: Option<Spanned<String>>,
    pub(super) send_hex: Option<Spanned<String>>,
    pub(super) expect: Option<Spanned<String>>,
    pub(super) expect_hex: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    pub(super) address: Option<Spanned<String>>,
    pub(super) host: Option<Spanned<String>>,
    pub(super) weight: Option<Spanned<i64>>,
    pub(super) drain: Option<bool>,
}

/// Turns byte offsets into line numbers and builds errors.
pub(super) struct Ctx<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
}

impl Ctx<'_> {
    fn line(&self, span: Range<usize>) -> usize {
        let at = span.start.min(self.text.len());
        self.text[..at].bytes().filter(|&b| b == b'\n').count() + 1
    }

    pub(super) fn err(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: self.line(span),
            field: field.into(),
            reason: reason.into(),
        }
    }
}
