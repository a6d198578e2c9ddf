//! The one-arm tables and what their last rows say.
use super::{OneArm, Rates, SMALL_TABLE, TARGET_CEILING, TARGET_NFT, ratio};

/// A table row: Mpps, the ratios to the ceiling and to nftables, and the program's own time
/// per packet where the kernel measured it.
pub(super) fn row(name: &str, r: &Rates, ceiling: &Rates, nft: &Rates) -> String {
    let prog = match r.prog_ns {
        Some(ns) => format!(" {ns:.0} |"),
        None => String::new(),
    };
    format!(
        "| {name} | {:.2} / {:.2} / {:.2} | {:.2}× | {:.2}× |{prog}\n",
        r.min,
        r.median,
        r.max,
        ratio(r, ceiling),
        ratio(r, nft)
    )
}

/// The one-arm table of `m`: ceiling, nftables and lb.
pub(super) fn one_arm_table(m: &OneArm, lb_name: &str) -> String {
    let mut out = "| mode | Mpps | × XDP_TX ceiling | × nftables | program ns/packet |\n|---|---|---|---|---|\n".to_string();
    out += &row("bare XDP_TX (ceiling)", &m.ceiling, &m.ceiling, &m.nft);
    out += &row(
        "XDP_TX after reading the IP header",
        &m.touch,
        &m.ceiling,
        &m.nft,
    );
    out += &row(
        "XDP_TX after growing the head and writing the outer headers (no lookup)",
        &m.encap,
        &m.ceiling,
        &m.nft,
    );
    out += &row(
        "nftables DNAT, jhash over 3 backends",
        &m.nft,
        &m.ceiling,
        &m.nft,
    );
    out += &row(lb_name, &m.lb, &m.ceiling, &m.nft);
    out += &row(
        "lb, its flow lookup (cache and table) replaced by one array entry (benchmarks only)",
        &m.fixed,
        &m.ceiling,
        &m.nft,
    );
    out += &row(
        &format!(
            "lb, a flow table of {SMALL_TABLE} slots ({} MB) instead of the default 1M",
            (SMALL_TABLE as usize * std::mem::size_of::<lb_common::flow::FlowSlot>()) >> 20
        ),
        &m.small,
        &m.ceiling,
        &m.nft,
    );
    out += &row(
        "lb, `forwarding = \"gue\"` (outer IP and UDP headers)",
        &m.gue,
        &m.ceiling,
        &m.nft,
    );
    out += &row(
        "lb, `forwarding = \"l2dsr\"` (the Ethernet addresses rewritten, no head grown)",
        &m.l2dsr,
        &m.ceiling,
        &m.nft,
    );
    out
}

/// The forwarding modes side by side: what a GUE header adds to IP-in-IP's cost on the wire,
/// and where l2dsr, which grows no head, stands against the ceiling.
pub(super) fn modes_note(m: &OneArm) -> String {
    let ns = |r: &Rates| r.prog_ns.map_or(String::new(), |n| format!(", {n:.0} ns"));
    format!(
        "\nPer forwarding mode (the same agent and VIP, `forwarding` changed; interleaved like the rest): ipip {:.2}×{}, gue {:.2}×{}, l2dsr {:.2}×{} the ceiling (program time per packet after each). l2dsr grows no head and writes only the Ethernet addresses; gue writes a UDP header more than ipip.\n",
        ratio(&m.lb, &m.ceiling),
        ns(&m.lb),
        ratio(&m.gue, &m.ceiling),
        ns(&m.gue),
        ratio(&m.l2dsr, &m.ceiling),
        ns(&m.l2dsr),
    )
}

/// What the last two rows say: how far a flow lookup that cost nothing would take lb, and
/// what the default table's size costs on the wire.
pub(super) fn fixed_note(m: &OneArm) -> String {
    let (Some(with), Some(without)) = (m.lb.prog_ns, m.fixed.prog_ns) else {
        return String::new();
    };
    let r = ratio(&m.fixed, &m.ceiling);
    let diff = with - without;
    let mut out = format!(
        "\nThe row with one array entry is lb with its flow lookup (the flow cache and the table) replaced by one entry that every packet shares (the test object's `xdp_lb_fixed_flow`, as in the per-packet section, swapped onto the agent's link the way `lb capture` swaps its program in): the program's own time goes from {with:.0} to {without:.0} ns per packet ({}), and the rate to {r:.2}× the ceiling. That is the most any flow table could give (one entry, always in the cache, is better than any real table of 4096 flows){}.\n",
        if diff >= 0.0 {
            format!(
                "{diff:.0} ns, against the lookup's cost in BPF_PROG_TEST_RUN (the per-packet section's parts), where one flow's entry stays in the CPU's cache"
            )
        } else {
            "no less: in this run the noise between modes, some 30 ns, exceeds the lookup's cost"
                .to_string()
        },
        if r < 0.8 {
            ", and it falls short of 0.8× here"
        } else {
            ": at or above 0.8× in this run"
        }
    );
    if let Some(encap) = m.encap.prog_ns.filter(|e| *e < without) {
        out += &format!(
            "\nThe encapsulation alone (the third row: the head grown and the outer headers written, no lookup) takes {encap:.0} ns a packet and reaches {:.2}× the ceiling{}. Of lb's {without:.0} ns with one entry, then, {:.0} are lb's own work (parsing and checking the headers, the backend's entry, the counters) and the rest is what any balancer that encapsulates pays on this path. That own work takes more here than the same path does in the per-packet section's loop (its one-entry row, less the trivial program's time), where one frame and one path run a million times back to back; here the kernel's receive and transmit path for each frame runs between two runs of the program, so its code and data likely meet colder caches and branch predictors (this machine exposes no performance counters to tell which). Measured with `bench --only e2e-ab` (this build against another object on the wire, alternating rounds): the counters cost about as much here as in the loop (8–20 ns a packet), so cold data lines are not it; hints that lay the hit path out as one run of code (`cold_path` on the rare branches of parsing and sending) made it no faster (+9 to +38 ns); nor did reading the flow's slot first and growing the head while that load was under way (IPv4 +13 to +66 ns).\n",
            ratio(&m.encap, &m.ceiling),
            if ratio(&m.encap, &m.ceiling) < 0.8 {
                ": below 0.8× before any balancing is done"
            } else {
                ""
            },
            without - encap,
        );
    }
    if let Some(small) = m.small.prog_ns {
        out += &format!(
            "\nThe last row is the agent with `flow_table_size = {SMALL_TABLE}` instead of the default 1M slots: {small:.0} ns per packet against {with:.0} ({:.2}× the ceiling against {:.2}×), and {without:.0} with one array entry. The same 4096 flows take 4096 slots of 64 bytes, as many cache lines in either table; what differs is how many pages they lie on: 256 in the small table, some 3600 of the default's 16384. With the flow cache in front of either table a flow's packets read its slot once a second and the cache's 256 pages otherwise, so the two tables should measure alike: what is left between them is noise (modes measured one after another differ by some 30 ns from noise alone). Before the cache, the pages' part measured 20–105 ns over runs here. Tried without a gain: the kernel allocates an array map over 32 KB with vmalloc, in 4 KB pages, and a smaller one with kmalloc, from its direct map (1 GB pages in this guest), so a prototype built the default's capacity as an array of 2341 maps of 112 sets each (both lookups inlined by the verifier, one more load a packet); in its e2e run lb took 311 ns a packet against 178 with one entry (IPv6 411 against 243), the same distance as the vmalloc'ed table, so the guest's page size is not what a big table pays here (the host's mapping of the guest's memory is out of its reach), and filling the outer map took some 20 s at each start (every update of a map of maps waits for an RCU grace period).\n",
            ratio(&m.small, &m.ceiling),
            ratio(&m.lb, &m.ceiling),
        );
    }
    out
}

/// Tells the summary what bounds the end-to-end targets in this run: what lb reaches with one
/// array entry in place of its flow table, and with a small table.
pub(super) fn e2e_bounds(m: &OneArm) {
    let (fixed, small) = (ratio(&m.fixed, &m.ceiling), ratio(&m.small, &m.ceiling));
    let pages = match (m.lb.prog_ns, m.small.prog_ns) {
        (Some(lb), Some(s)) if lb > s => format!(
            " (in the program's own time, {lb:.0} ns a packet against {s:.0}; the flow cache \
             answers both tables' flows but once a second)"
        ),
        _ => String::new(),
    };
    let noise = match (m.lb.prog_ns, m.fixed.prog_ns) {
        (Some(lb), Some(f)) if fixed < ratio(&m.lb, &m.ceiling) => format!(
            " (below lb's own rate: in this run the noise between modes exceeds what the table \
             costs; the program's own time, the steadier figure, is {f:.0} ns a packet against \
             lb's {lb:.0})"
        ),
        _ => String::new(),
    };
    crate::summary::bound(
        TARGET_CEILING,
        format!(
            "with one array entry in place of its flow table, the most any flow table could \
             give, lb reaches {fixed:.2}×{noise}; with a flow table of {SMALL_TABLE} slots in \
             place of the default 1M, {small:.2}×{pages}."
        ),
    );
    crate::summary::bound(
        TARGET_NFT,
        format!(
            "the bare XDP_TX ceiling itself is {:.2}× nftables here, so 6× asks for {:.2}× the \
             ceiling; lb with one array entry in place of its flow table reaches {:.2}× \
             nftables, with a table of {SMALL_TABLE} slots {:.2}×.",
            ratio(&m.ceiling, &m.nft),
            6.0 / ratio(&m.ceiling, &m.nft),
            ratio(&m.fixed, &m.nft),
            ratio(&m.small, &m.nft),
        ),
    );
}
