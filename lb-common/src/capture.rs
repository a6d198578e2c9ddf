//! `lb capture`'s shared layout: what the program is told to copy, and what it copies.
use core::mem::size_of;

/// `lb capture`: what the program copies into [`crate::map_names::CAPTURE`] (the single entry of
/// [`crate::map_names::CAPTURE_CTL`]). All zero: nothing.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CaptureCtl {
    /// Non-zero while a capture runs.
    pub on: u32,
    /// Only packets of this VIP id ([`CAPTURE_ANY`]: any packet).
    pub vip: u32,
    /// Non-zero: only packets the program dropped (or aborted).
    pub drops: u32,
    /// Bytes copied per packet at most (1..=[`CAPTURE_MAX`]).
    pub snaplen: u32,
}
const _: () = assert!(size_of::<CaptureCtl>() == 16);

/// [`CaptureCtl::vip`]: no VIP filter.
pub const CAPTURE_ANY: u32 = u32::MAX;
/// The most bytes of one packet a capture record holds.
pub const CAPTURE_MAX: u32 = 2048;
/// The capture ring buffer's size (bytes; a power of two, whole pages).
pub const CAPTURE_RING_BYTES: u32 = 8 << 20;

/// One captured packet as the ring buffer carries it: this header, then [`CAPTURE_MAX`]
/// bytes of which the first `caplen` are the frame as the program left it (encapsulated when
/// forwarded).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CaptureHeader {
    /// `CLOCK_MONOTONIC` (bpf_ktime_get_ns).
    pub ts_ns: u64,
    /// The frame's length.
    pub len: u32,
    /// Bytes copied.
    pub caplen: u32,
    /// The VIP id the packet belonged to, or [`CAPTURE_ANY`] (none).
    pub vip: u32,
    /// Its [`crate::Counter`].
    pub counter: u32,
    /// The interface it arrived on.
    pub ifindex: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<CaptureHeader>() == 32);
