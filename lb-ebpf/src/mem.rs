//! The one bounds-checked way to touch packet memory.
use aya_ebpf::programs::XdpContext;
use core::mem::size_of;

/// Where the packet starts and ends.
pub trait Bounds {
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
}

impl Bounds for XdpContext {
    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }
}

/// The packet's bounds as plain values, for a function that is not inlined: handed the
/// context instead, LLVM would pass the context's 32-bit fields and widen them in the callee,
/// and the verifier refuses any arithmetic on the packet-end pointer.
#[derive(Clone, Copy)]
pub struct Frame {
    pub start: usize,
    pub end: usize,
}

impl Bounds for Frame {
    #[inline(always)]
    fn data(&self) -> usize {
        self.start
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        self.end
    }
}

/// A pointer to a `T` at `off` bytes into the packet, if the packet holds all of it.
#[inline(always)]
pub fn ptr_at<T>(ctx: &impl Bounds, off: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *const T)
}

/// Like [`ptr_at`], writable.
#[inline(always)]
pub fn ptr_at_mut<T>(ctx: &impl Bounds, off: usize) -> Option<*mut T> {
    ptr_at::<T>(ctx, off).map(|p| p as *mut T)
}

/// Reads a `T` at `off` (unaligned: packet data has no alignment guarantee).
#[inline(always)]
pub fn read<T: Copy>(ctx: &impl Bounds, off: usize) -> Option<T> {
    ptr_at::<T>(ctx, off).map(|p| unsafe { p.read_unaligned() })
}

/// An IPv4 address in the 16-byte form the maps use (zeros after it), built from two words:
/// a zeroed byte array would become a call to BPF's byte-at-a-time memset.
#[inline(always)]
pub fn v4_in_16(a: [u8; 4]) -> [u8; 16] {
    let w: [u64; 2] = [u32::from_ne_bytes(a) as u64, 0];
    // Safety: two u64 are sixteen bytes; on this little-endian target the address's bytes come
    // first, in order.
    unsafe { core::mem::transmute::<[u64; 2], [u8; 16]>(w) }
}

/// Two addresses equal, as two 64-bit compares (an array compare may become a `memcmp` call).
#[inline(always)]
pub fn eq16(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let (a, b) = (a.as_ptr() as *const u64, b.as_ptr() as *const u64);
    // Safety: both are 16 bytes; unaligned reads.
    unsafe {
        a.read_unaligned() == b.read_unaligned()
            && a.add(1).read_unaligned() == b.add(1).read_unaligned()
    }
}
