//! A deterministic cpio archive in the "newc" format (the one the Linux initramfs loader reads).
//!
//! Every entry has uid 0, gid 0, mtime [`MTIME`], an inode number given by its position, and the
//! mode its caller chose; entries are written sorted by path; nothing about the build machine
//! (owners, times, umask, directory order) reaches the bytes.

use std::collections::BTreeMap;

/// Every entry's mtime (the epoch; the ramdisk's content, not its time, is what is measured).
pub const MTIME: u32 = 0;

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;

/// A directory or a regular file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
}

/// Why an archive could not be written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpioError {
    #[error("`{0}` is not a relative path of plain components")]
    BadPath(String),
    #[error("`{0}` is in the archive twice")]
    Duplicate(String),
    #[error("`{path}`: its parent `{parent}` is not a directory in the archive")]
    MissingParent { path: String, parent: String },
    #[error("`{0}` is larger than 4 GiB")]
    TooLarge(String),
}

/// The archive's entries by path (sorted by construction).
#[derive(Clone, Debug, Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

impl Archive {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory.
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<&mut Self, CpioError> {
        self.insert(path, Entry::Dir { mode })
    }

    /// Adds a regular file.
    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> Result<&mut Self, CpioError> {
        self.insert(path, Entry::File { mode, data })
    }

    fn insert(&mut self, path: &str, entry: Entry) -> Result<&mut Self, CpioError> {
        let plain = !path.is_empty()
            && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
            && !path.contains('\0');
        if !plain {
            return Err(CpioError::BadPath(path.into()));
        }
        if self.entries.contains_key(path) {
            return Err(CpioError::Duplicate(path.into()));
        }
        self.entries.insert(path.into(), entry);
        Ok(self)
    }

    /// The paths, in archive order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Writes the archive: entries sorted by path (a parent sorts before its children), then the
    /// trailer.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CpioError> {
        let mut out = Vec::new();
        for (ino, (path, entry)) in (1u32..).zip(&self.entries) {
            if let Some((parent, _)) = path.rsplit_once('/')
                && !matches!(self.entries.get(parent), Some(Entry::Dir { .. }))
            {
                return Err(CpioError::MissingParent { path: path.clone(), parent: parent.into() });
            }
            let (mode, nlink, data): (u32, u32, &[u8]) = match entry {
                Entry::Dir { mode } => (S_IFDIR | (mode & 0o7777), 2, &[]),
                Entry::File { mode, data } => (S_IFREG | (mode & 0o7777), 1, data),
            };
            let size = u32::try_from(data.len()).map_err(|_| CpioError::TooLarge(path.clone()))?;
            write_entry(&mut out, ino, mode, nlink, path, data, size);
        }
        write_entry(&mut out, 0, 0, 1, "TRAILER!!!", &[], 0);
        Ok(out)
    }
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn write_entry(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    name: &str,
    data: &[u8],
    size: u32,
) {
    // The name's length counts its terminating NUL.
    let namesize = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
    let fields = [ino, mode, 0, 0, nlink, MTIME, size, 0, 0, 0, 0, namesize, 0];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout_is_exact() {
        let mut a = Archive::new();
        a.dir("d", 0o755).unwrap().file("d/f", 0o644, b"hi".to_vec()).unwrap();
        let bytes = a.to_bytes().unwrap();
        // Header 110 bytes + "d\0" padded to 112; then "d/f\0" → 114 → 116, data 2 → 4.
        assert_eq!(&bytes[..6], b"070701");
        assert_eq!(&bytes[6..14], b"00000001");
        assert_eq!(&bytes[14..22], b"000041ed");
        assert_eq!(&bytes[110..112], b"d\0");
        let f = 112;
        assert_eq!(&bytes[f + 14..f + 22], b"000081a4");
        assert_eq!(&bytes[f + 54..f + 62], b"00000002");
        assert_eq!(&bytes[f + 110..f + 114], b"d/f\0");
        assert_eq!(&bytes[f + 116..f + 118], b"hi");
        let t = f + 120;
        assert_eq!(&bytes[t + 110..t + 121], b"TRAILER!!!\0");
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn insertion_order_does_not_matter() {
        let mut a = Archive::new();
        a.dir("b", 0o755).unwrap().file("b/x", 0o600, vec![1]).unwrap().dir("a", 0o700).unwrap();
        let mut b = Archive::new();
        b.dir("a", 0o700).unwrap().dir("b", 0o755).unwrap().file("b/x", 0o600, vec![1]).unwrap();
        assert_eq!(a.to_bytes().unwrap(), b.to_bytes().unwrap());
    }

    #[test]
    fn bad_archives_are_refused() {
        let mut a = Archive::new();
        assert!(a.dir("../x", 0o755).is_err());
        assert!(a.dir("/x", 0o755).is_err());
        a.file("x/y", 0o644, vec![]).unwrap();
        assert!(matches!(a.to_bytes(), Err(CpioError::MissingParent { .. })));
        assert!(a.file("x/y", 0o644, vec![]).is_err());
    }
}
