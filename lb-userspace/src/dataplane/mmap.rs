//! Array maps in memory (`BPF_F_MMAPABLE`): a new ring is written with plain stores, and the
//! flow table is counted and filled without a system call per slot.
use std::{
    io,
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
};

use aya::maps::MapData;
use lb_common::FlowSlot;

/// A shared mapping of an array map's values, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    bytes: usize,
    /// Values in the map.
    len: usize,
}

// Safety: the mapping belongs to its value alone; nothing else in the process aliases it.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `data`, an array of values of `value_size` bytes (the kernel lays them out
    /// `value_size` rounded up to 8 apart), writable or not.
    fn new(data: &MapData, value_size: u32, writable: bool) -> io::Result<Self> {
        let info = data
            .info()
            .map_err(|e| io::Error::other(format!("map info: {e}")))?;
        if info.value_size() != value_size || cfg!(target_endian = "big") {
            return Err(io::Error::other(format!(
                "values are {} bytes, not {value_size}",
                info.value_size()
            )));
        }
        let len = info.max_entries() as usize;
        let bytes = len * value_size.next_multiple_of(8) as usize;
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // Safety: a fresh shared mapping of the map's fd over exactly its values; the kernel
        // refuses it unless the map was created with BPF_F_MMAPABLE.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                prot,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: NonNull::new(p as *mut u8).ok_or_else(|| io::Error::other("null mapping"))?,
            bytes,
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // Safety: unmaps exactly what new() mapped.
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.bytes) };
    }
}

/// The rings map, writable. Each slot is a `u64` whose low half (this is a little-endian
/// target) is the `u32` the program reads.
pub(super) struct Rings(Mapping);

impl Rings {
    pub(super) fn new(map: &aya::maps::Map) -> io::Result<Self> {
        let aya::maps::Map::Array(data) = map else {
            return Err(io::Error::other("not an array map"));
        };
        Mapping::new(data, 4, true).map(Rings)
    }

    pub(super) fn slots(&mut self) -> &mut [u64] {
        // Safety: the mapping is `len` 8-byte slots, alive until drop, borrowed mutably here.
        unsafe { std::slice::from_raw_parts_mut(self.0.ptr.as_ptr() as *mut u64, self.0.len) }
    }
}

/// The flow cache ([`lb_common::flow_cache`]), writable.
pub(super) struct FlowCache(Mapping);

impl FlowCache {
    pub(super) fn new(map: &aya::maps::Map) -> io::Result<Self> {
        let aya::maps::Map::Array(data) = map else {
            return Err(io::Error::other("not an array map"));
        };
        Self::of(data, true)
    }

    /// The cache behind `data` (a pinned map), writable or not.
    pub(super) fn of(data: &MapData, writable: bool) -> io::Result<Self> {
        Mapping::new(
            data,
            size_of::<lb_common::FlowCacheEntry>() as u32,
            writable,
        )
        .map(FlowCache)
    }

    /// Entries written in the epoch of `now`: the flows the cache answers for now. One word
    /// of each entry read.
    pub(super) fn current(&self, now: u64) -> u64 {
        let p = self.0.ptr.as_ptr() as *const lb_common::FlowCacheEntry;
        (0..self.0.len)
            .filter(|&i| {
                // Safety: within the live mapping of `len` entries; each word read alone.
                let (tag, stamp) = unsafe {
                    let e = p.add(i);
                    (
                        std::ptr::addr_of!((*e).tag).read_volatile(),
                        std::ptr::addr_of!((*e).stamp).read_volatile(),
                    )
                };
                tag != 0 && lb_common::FlowCacheEntry::current(stamp, now)
            })
            .count() as u64
    }

    /// Empties every entry: each flow's next packet reads the table. Word by word, as the
    /// program writes them.
    pub(super) fn wipe(&mut self) {
        let words = self.0.bytes / 8;
        let p = self.0.ptr.as_ptr() as *mut u64;
        for i in 0..words {
            // Safety: within the live, writable mapping of `bytes` bytes, 8-aligned.
            unsafe { p.add(i).write_volatile(0) };
        }
    }
}

/// The flow table's slots. The program writes them while they are read here: every access is
/// a volatile copy of one field or slot, never a reference into the mapping.
pub(super) struct FlowSlots(Mapping);

impl FlowSlots {
    pub(super) fn new(data: &MapData, writable: bool) -> io::Result<Self> {
        Mapping::new(data, size_of::<FlowSlot>() as u32, writable).map(FlowSlots)
    }

    fn at(&self, i: usize) -> *mut FlowSlot {
        assert!(i < self.0.len, "slot {i} of {}", self.0.len);
        // Safety: in bounds (checked above); slots are 64 bytes apart from a page boundary.
        unsafe { (self.0.ptr.as_ptr() as *mut FlowSlot).add(i) }
    }

    /// Slots in the table.
    pub(super) fn len(&self) -> usize {
        self.0.len
    }

    /// A copy of slot `i`.
    pub(super) fn get(&self, i: usize) -> FlowSlot {
        // Safety: `at` gives a valid, aligned slot of the live mapping.
        unsafe { self.at(i).read_volatile() }
    }

    /// Writes slot `i` (the mapping must be writable).
    pub(super) fn set(&mut self, i: usize, slot: FlowSlot) {
        // Safety: as in `get`.
        unsafe { self.at(i).write_volatile(slot) }
    }

    /// Slots that hold a flow: one byte read per slot.
    pub(super) fn occupied(&self) -> u64 {
        (0..self.0.len)
            .filter(|&i| {
                // Safety: as in `get`; a field of the slot, read alone.
                unsafe { std::ptr::addr_of!((*self.at(i)).key.family).read_volatile() != 0 }
            })
            .count() as u64
    }
}

/// An array map of `T`s (`T`'s size a multiple of 8, as the kernel lays values out), writable:
/// the VIP index's maps. Every access is a volatile copy through a raw pointer, never a
/// reference into the mapping, which the program reads meanwhile.
pub(super) struct Values<T>(Mapping, std::marker::PhantomData<T>);

impl<T: Copy> Values<T> {
    pub(super) fn new(map: &aya::maps::Map) -> io::Result<Self> {
        let aya::maps::Map::Array(data) = map else {
            return Err(io::Error::other("not an array map"));
        };
        assert!(size_of::<T>().is_multiple_of(8));
        Mapping::new(data, size_of::<T>() as u32, true).map(|m| Values(m, std::marker::PhantomData))
    }

    pub(super) fn len(&self) -> usize {
        self.0.len
    }

    /// Value `i`.
    pub(super) fn at(&self, i: usize) -> *mut T {
        assert!(i < self.0.len, "value {i} of {}", self.0.len);
        // Safety: in bounds (checked above); values lie size_of::<T>() apart from the start.
        unsafe { (self.0.ptr.as_ptr() as *mut T).add(i) }
    }

    pub(super) fn get(&self, i: usize) -> T {
        // Safety: `at` gives a valid, aligned value of the live mapping.
        unsafe { self.at(i).read_volatile() }
    }

    pub(super) fn set(&mut self, i: usize, v: T) {
        // Safety: as in `get`; the mapping is writable.
        unsafe { self.at(i).write_volatile(v) }
    }
}
