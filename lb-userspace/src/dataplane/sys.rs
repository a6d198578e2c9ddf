//! The bpf(2) commands aya does not offer, called directly: the RCU grace period's wait
//! ([`super::grace`]) and reading every entry of an array map in one call ([`read_all`]).
use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

pub(super) const BPF_MAP_CREATE: libc::c_long = 0;
pub(super) const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// `union bpf_attr`, as large as any command here reads (the kernel takes a shorter one and
/// requires the bytes past the fields it knows to be zero).
#[repr(C, align(8))]
pub(super) struct Attr(pub [u32; 32]);

impl Attr {
    pub fn new() -> Self {
        Attr([0; 32])
    }

    /// Writes a pointer as the 64-bit field at word `at`.
    pub fn ptr<T>(&mut self, at: usize, p: *const T) {
        let p = p as u64;
        self.0[at] = p as u32;
        self.0[at + 1] = (p >> 32) as u32;
    }
}

pub(super) fn bpf(cmd: libc::c_long, attr: &Attr) -> io::Result<i64> {
    // Safety: `attr` is a valid, fully initialised bpf_attr of the size passed.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const Attr, size_of::<Attr>()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// Every value of the array map `fd` of `entries` entries, in index order: `per_key` values of
/// `T` an entry (a per-CPU map's: one a possible CPU, `T`'s size a multiple of 8, as the kernel
/// lays them out; any other's: 1). A few calls of `BPF_MAP_LOOKUP_BATCH` instead of one lookup
/// an entry: a scrape reads thousands of backends' counters.
pub(super) fn read_all<T: aya::Pod + Default>(
    fd: BorrowedFd<'_>,
    entries: u32,
    per_key: usize,
) -> io::Result<Vec<T>> {
    assert!(per_key == 1 || size_of::<T>().is_multiple_of(8));
    let mut values = vec![T::default(); entries as usize * per_key];
    let mut keys = vec![0u32; entries as usize];
    let mut done = 0usize;
    let mut next = 0u32;
    while done < entries as usize {
        let mut a = Attr::new();
        // in_batch, out_batch, keys, values (pointers); count, map_fd; elem_flags, flags.
        if done > 0 {
            a.ptr(0, &next);
        }
        a.ptr(2, &raw mut next);
        a.ptr(4, keys[done..].as_mut_ptr());
        a.ptr(6, values[done * per_key..].as_mut_ptr());
        a.0[8] = entries - done as u32;
        a.0[9] = fd.as_raw_fd() as u32;
        let end = match bpf(BPF_MAP_LOOKUP_BATCH, &a) {
            Ok(_) => false,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            Err(e) => return Err(e),
        };
        let got = a.0[8] as usize;
        done += got;
        if end || got == 0 {
            break;
        }
    }
    if done != entries as usize {
        return Err(io::Error::other(format!(
            "read {done} of {entries} entries"
        )));
    }
    // An array's keys are its indices, returned in order: say so rather than assume it.
    if keys.iter().enumerate().any(|(i, k)| *k != i as u32) {
        return Err(io::Error::other("entries out of order"));
    }
    Ok(values)
}
