//! `lb capture`: while the agent has a capture running, packets that match its filter are
//! copied (the frame as the program leaves it, up to the snap length) into a BPF ring buffer.
//! The hook is compiled in only where the agent loads the program for a capture, and that
//! program takes the running one's place for the capture's duration: without a capture, no
//! packet pays for it. In it, a packet the filter leaves out costs an array read and a
//! branch; the copying is out of line.
use aya_ebpf::{
    bindings::{xdp_action, xdp_md},
    helpers::generated::{bpf_ktime_get_ns, bpf_xdp_load_bytes},
    programs::XdpContext,
};
use lb_common::{CAPTURE_ANY, CAPTURE_MAX, CaptureHeader};

use crate::{
    maps::{CAPTURE, CAPTURE_CTL, CAPTURE_LOST},
    verdict::Verdict,
};

/// One ring-buffer record: the header, then the frame's first bytes.
#[repr(C)]
pub struct Record {
    pub header: CaptureHeader,
    pub data: [u8; CAPTURE_MAX as usize],
}

#[inline(always)]
pub fn hook(ctx: &XdpContext, v: &Verdict) {
    let Some(ctl) = CAPTURE_CTL.get(0) else {
        return;
    };
    if ctl.on != 0 {
        copy(ctx.ctx, v.action, v.counter, v.vip);
    }
}

#[inline(never)]
fn copy(md: *mut xdp_md, action: u32, counter: u32, vip: u32) {
    let Some(ctl) = CAPTURE_CTL.get(0) else {
        return;
    };
    if ctl.vip != CAPTURE_ANY && ctl.vip != vip {
        return;
    }
    let dropped = action == xdp_action::XDP_DROP || action == xdp_action::XDP_ABORTED;
    if ctl.drops != 0 && !dropped {
        return;
    }
    let ctx = XdpContext::new(md);
    let len = (ctx.data_end() - ctx.data()) as u32;
    let mut caplen = len;
    if caplen > ctl.snaplen {
        caplen = ctl.snaplen;
    }
    // Bounds the verifier can follow: 1..=CAPTURE_MAX, checked on the very register the helper
    // gets (through memory, so that LLVM cannot fold the check into the ones above).
    let caplen = unsafe { core::ptr::read_volatile(&caplen) };
    if caplen == 0 || caplen > CAPTURE_MAX {
        return;
    }
    let Some(mut entry) = CAPTURE.reserve::<Record>(0) else {
        // The agent is not keeping up: counted, so the capture can say what it missed.
        if let Some(n) = CAPTURE_LOST.get_ptr_mut(0) {
            unsafe { *n += 1 };
        }
        return;
    };
    let r = entry.as_mut_ptr();
    // Safety: the reservation is ours until submitted or discarded; its size is a Record's.
    let copied = unsafe {
        (*r).header = CaptureHeader {
            ts_ns: bpf_ktime_get_ns(),
            len,
            caplen,
            vip,
            counter,
            ifindex: (*md).ingress_ifindex,
            _pad: 0,
        };
        bpf_xdp_load_bytes(md, 0, (*r).data.as_mut_ptr() as *mut _, caplen)
    };
    if copied == 0 {
        entry.submit(0);
    } else {
        entry.discard(0);
    }
}
