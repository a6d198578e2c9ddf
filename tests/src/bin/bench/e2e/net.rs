//! An address family's numbers in the end-to-end topologies, and what is configured from
//! them: the balancer's shell set-up, nftables' DNAT and lb's config.
use lb_common::{FAMILY_V4, FAMILY_V6};
use lb_tests::{Netns, TempDir};

/// An address family's numbers in a topology: the subnet the balancer shares with the
/// backends (host 2 the balancer, 11 to 13 the backends), the generator's sources, the VIP.
pub struct Net {
    pub family: u8,
    /// The subnet's addresses without the host part: "198.18.0." or "fd00:18::".
    pub subnet: &'static str,
    pub prefix: u8,
    /// The generator's source addresses, the last byte varying.
    pub sources: [u8; 16],
    pub vip: &'static str,
}

pub const V4: Net = Net {
    family: FAMILY_V4,
    subnet: "198.18.0.",
    prefix: 24,
    sources: [198, 18, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    vip: "198.19.0.100",
};

pub const V6: Net = Net {
    family: FAMILY_V6,
    subnet: "fd00:18::",
    prefix: 64,
    sources: [0xfd, 0, 0, 0x17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    vip: "fd00:19::100",
};

impl Net {
    pub fn host(&self, h: u8) -> String {
        format!("{}{h}", self.subnet)
    }
    pub fn v6(&self) -> bool {
        self.family == FAMILY_V6
    }
    /// `ip` for this family ("ip" or "ip -6"); nftables' family ("ip" or "ip6").
    pub fn ip(&self) -> &'static str {
        if self.v6() { "ip -6" } else { "ip" }
    }
    pub fn nft(&self) -> &'static str {
        if self.v6() { "ip6" } else { "ip" }
    }
    /// The VIP's UDP port 53, as the agent's config writes it.
    pub fn vip_port(&self) -> String {
        if self.v6() {
            format!("[{}]:53", self.vip)
        } else {
            format!("{}:53", self.vip)
        }
    }
    /// The balancer's address on `dev` (host 2), forwarding on, and the backends' neighbour
    /// entries (their frames go to `mac`), as shell commands.
    pub fn balancer_setup(&self, dev: &str, mac: &str) -> String {
        let (ip, p) = (self.ip(), self.prefix);
        let nodad = if self.v6() { " nodad" } else { "" };
        let forward = if self.v6() {
            "net.ipv6.conf.all.forwarding=1".to_string()
        } else {
            format!(
                "net.ipv4.ip_forward=1 net.ipv4.conf.all.forwarding=1 net.ipv4.conf.all.rp_filter=0 \
                 net.ipv4.conf.{dev}.rp_filter=0 net.ipv4.conf.all.send_redirects=0 \
                 net.ipv4.conf.{dev}.send_redirects=0"
            )
        };
        let mut sh = format!(
            "{ip} addr add {}/{p} dev {dev}{nodad} && sysctl -qw {forward}",
            self.host(2)
        );
        for b in [11, 12, 13] {
            sh += &format!(
                " && {ip} neigh replace {} lladdr {mac} dev {dev} nud permanent",
                self.host(b)
            );
        }
        sh
    }
}

/// nftables in a namespace DNATing the VIP's UDP port 53 to backends 11, 12 and 13 of a
/// [`Net`], by a jhash of source address and port (as lb spreads flows), for as long as this
/// lives.
pub struct NftDnat {
    ns: String,
    family: &'static str,
}

impl NftDnat {
    pub fn add(ns: &Netns, net: &Net) -> Self {
        let (t, vip) = (net.nft(), net.vip);
        let (b1, b2, b3) = (net.host(11), net.host(12), net.host(13));
        ns.sh(&format!(
            "nft add table {t} lbnat \
             && nft add chain {t} lbnat pre \"{{ type nat hook prerouting priority -100; }}\" \
             && nft add rule {t} lbnat pre {t} daddr {vip} udp dport 53 dnat to jhash {t} saddr . udp sport mod 3 map \"{{ 0 : {b1}, 1 : {b2}, 2 : {b3} }}\""
        ));
        NftDnat {
            ns: ns.name.clone(),
            family: t,
        }
    }
}

impl Drop for NftDnat {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "nft",
                "delete",
                "table",
                self.family,
                "lbnat",
            ])
            .status();
    }
}

/// The agent's config, as an operator would write it: the flow-table size given (`None`: the
/// default), one UDP VIP on port 53 and backends 11, 12, 13 of `net` (whose host 2 is the
/// balancer's source).
pub fn agent_config(
    tmp: &TempDir,
    interfaces: &[&str],
    net: &Net,
    flow_table_size: Option<u32>,
) -> String {
    let ifs: Vec<String> = interfaces.iter().map(|i| format!("\"{i}\"")).collect();
    let source = if net.v6() { "source_v6" } else { "source_v4" };
    let table = flow_table_size
        .map(|n| format!("flow_table_size = {n}\n"))
        .unwrap_or_default();
    let mut cfg = format!(
        "[agent]\ninterfaces = [{}]\nsocket = \"{}\"\nstate_dir = \"{}\"\n{source} = \"{}\"\n{table}\n\
         [[vip]]\nname = \"dns\"\naddress = \"{}\"\nprotocol = \"udp\"\n\n[vip.health]\nkind = \"none\"\n",
        ifs.join(", "),
        tmp.path("lb.sock").display(),
        tmp.path("state").display(),
        net.host(2),
        net.vip_port()
    );
    for b in [11, 12, 13] {
        cfg += &format!("\n[[vip.backend]]\naddress = \"{}\"\n", net.host(b));
    }
    cfg
}
