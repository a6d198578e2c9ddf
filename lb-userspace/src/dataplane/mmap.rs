//! The rings map in memory (`BPF_F_MMAPABLE`): a new ring is written with plain stores.
use std::{
    io,
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
};

use aya::maps::Map;

/// A shared, writable mapping of an array map of `u32`, unmapped on drop. The kernel lays an
/// array's values out 8 bytes apart, so each slot is a `u64` whose low half (this is a
/// little-endian target) is the value the program reads.
pub(super) struct Rings {
    ptr: NonNull<u64>,
    len: usize,
}

// Safety: the mapping belongs to this value alone; nothing else in the process aliases it.
unsafe impl Send for Rings {}

impl Rings {
    pub(super) fn new(map: &Map) -> io::Result<Self> {
        let Map::Array(data) = map else {
            return Err(io::Error::other("not an array map"));
        };
        let info = data
            .info()
            .map_err(|e| io::Error::other(format!("map info: {e}")))?;
        if info.value_size() != 4 || cfg!(target_endian = "big") {
            return Err(io::Error::other("values are not 32-bit"));
        }
        let len = info.max_entries() as usize;
        // Safety: a fresh shared mapping of the map's fd over exactly its values; the kernel
        // refuses it unless the map was created with BPF_F_MMAPABLE.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len * 8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Rings {
            ptr: NonNull::new(p as *mut u64).ok_or_else(|| io::Error::other("null mapping"))?,
            len,
        })
    }

    pub(super) fn slots(&mut self) -> &mut [u64] {
        // Safety: the mapping is `len` 8-byte slots, alive until drop, borrowed mutably here.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Rings {
    fn drop(&mut self) {
        // Safety: unmaps exactly what new() mapped.
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len * 8) };
    }
}
