//! Kernel struct layouts from the running kernel's BTF (/sys/kernel/btf/vmlinux).
//!
//! The kernel programs carry no offsets of their own (Rust emits no CO-RE relocations):
//! everything they read is resolved here, by member name, and handed over in
//! [`tracer_common::Config`]. A member this kernel lacks stays [`FieldLoc::ABSENT`] and the
//! loader says what that costs; it is never guessed.

use std::{
    cell::RefCell,
    collections::{HashMap, HashSet},
    path::Path,
};

use anyhow::{Context, Result, anyhow, bail};
use btf_rs::{Backend, Btf, BtfType, Type};
use tracer_common::FieldLoc;

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

pub struct KernelBtf {
    btf: Btf,
    /// Name → types, for the few dozen names the loader asks about: the file is mapped, not
    /// parsed up front (a full parse of vmlinux BTF costs tens of MB and, under emulation,
    /// minutes). [`KernelBtf::load_finding`] finds all the names the loader will ask about in
    /// one pass over the type table; a name it was not given costs a pass of its own.
    by_name: RefCell<HashMap<String, Vec<Type>>>,
}

/// Maps the BTF file. sysfs lets vmlinux BTF be mapped only from 6.10 or so; on older
/// kernels the bytes are read once into an in-memory file, which is mapped instead (one
/// read, no per-type file access, no up-front parse).
fn map_btf(path: &Path) -> Result<Btf> {
    let map =
        |path: &Path| -> Result<Btf> { Ok(Btf::from_file_with_backend(path, Backend::Mmap)?) };
    match map(path) {
        Ok(mapped) => Ok(mapped),
        Err(direct) => {
            let bytes = std::fs::read(path)?;
            let memfd = nix::sys::memfd::memfd_create(
                c"tracer-btf",
                nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
            )
            .context("memfd_create")?;
            let mut file = std::fs::File::from(memfd);
            std::io::Write::write_all(&mut file, &bytes)?;
            let copy = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
            map(Path::new(&copy))
                .map_err(|e| anyhow!("mapping it failed ({direct}), and so did a copy ({e})"))
        }
    }
}

/// Type ids by name, and the number of types in the table.
type NamedIds<'w> = (HashMap<&'w str, Vec<u32>>, u32);

/// The file's bytes, mapped (read into memory where sysfs cannot be mapped); None when
/// neither works (btf_rs then answers, and says what failed).
fn read_raw(path: &Path) -> Option<Raw> {
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: BTF files do not change while mapped.
    match unsafe { memmap2::Mmap::map(&file) } {
        Ok(map) => Some(Raw::Mapped(map)),
        Err(_) => std::fs::read(path).ok().map(Raw::Read),
    }
}

enum Raw {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl std::ops::Deref for Raw {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Raw::Mapped(map) => map,
            Raw::Read(bytes) => bytes,
        }
    }
}

/// Ids of the types named in `wanted`, found in one pass over the raw BTF's type table
/// (only each type's fixed header and name are read; btf_rs answers one name per pass and
/// decodes every type), and the number of types. None when the bytes are not
/// native-endian BTF of a layout this reader knows (then btf_rs answers, name by name).
fn ids_by_names<'w>(raw: &[u8], wanted: &HashSet<&'w str>) -> Option<NamedIds<'w>> {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(raw.get(at..at + 4)?.try_into().ok()?))
    };
    // struct btf_header: magic (u16), version, flags, hdr_len, type_off, type_len, str_off,
    // str_len.
    let magic = u16::from_ne_bytes(raw.get(0..2)?.try_into().ok()?);
    if magic != 0xeb9f || raw.get(2) != Some(&1) {
        return None;
    }
    let hdr_len = word(4)? as usize;
    let types_start = hdr_len.checked_add(word(8)? as usize)?;
    let types_end = types_start.checked_add(word(12)? as usize)?;
    let strings_start = hdr_len.checked_add(word(16)? as usize)?;
    let strings = raw.get(strings_start..strings_start.checked_add(word(20)? as usize)?)?;
    raw.get(types_start..types_end)?;
    let longest = wanted.iter().map(|n| n.len()).max().unwrap_or(0);

    let mut found: HashMap<&str, Vec<u32>> = HashMap::new();
    let (mut at, mut id) = (types_start, 1u32);
    while at < types_end {
        // struct btf_type: name_off, info (vlen: bits 0-15, kind: bits 24-28), size/type.
        let name_off = word(at)? as usize;
        let info = word(at + 4)?;
        let vlen = (info & 0xffff) as usize;
        let extra = match (info >> 24) & 0x1f {
            // INT, VAR, DECL_TAG: one u32.
            1 | 14 | 17 => 4,
            // ARRAY: struct btf_array.
            3 => 12,
            // STRUCT, UNION (btf_member), DATASEC (btf_var_secinfo), ENUM64 (btf_enum64).
            4 | 5 | 15 | 19 => 12 * vlen,
            // ENUM (btf_enum), FUNC_PROTO (btf_param).
            6 | 13 => 8 * vlen,
            // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG.
            2 | 7..=12 | 16 | 18 => 0,
            _ => return None,
        };
        if name_off != 0 {
            let tail = strings.get(name_off..)?;
            // Only names as long as a wanted one are worth finding the end of.
            let window = &tail[..tail.len().min(longest + 1)];
            if let Some(len) = window.iter().position(|&b| b == 0)
                && let Ok(name) = std::str::from_utf8(&window[..len])
                && let Some(&wanted_name) = wanted.get(name)
            {
                found.entry(wanted_name).or_default().push(id);
            }
        }
        at += 12 + extra;
        id += 1;
    }
    (at == types_end).then_some((found, id - 1))
}

/// A member found inside a struct: where it starts (in bits) and its resolved type.
struct Found {
    bit_offset: u32,
    bitfield_size: Option<u32>,
    type_id: u32,
}

impl KernelBtf {
    pub fn load() -> Result<Self> {
        Self::from_file(Path::new(VMLINUX))
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let btf = map_btf(path).map_err(|e| {
            anyhow!(
                "cannot read kernel BTF at {}: {e:#} (the kernel needs CONFIG_DEBUG_INFO_BTF=y)",
                path.display()
            )
        })?;
        Ok(Self {
            btf,
            by_name: RefCell::new(HashMap::new()),
        })
    }

    /// The running kernel's BTF, with every name in `names` (types, enums,
    /// [`tracepoint_typedef`]s) looked up in one pass over the type table, so that asking
    /// about them later costs no pass of its own.
    pub fn load_finding(names: &[impl AsRef<str>]) -> Result<Self> {
        let path = Path::new(VMLINUX);
        let wanted: HashSet<&str> = names
            .iter()
            .map(AsRef::as_ref)
            .filter(|n| !n.is_empty())
            .collect();
        // Read before btf_rs maps the file, and released before: every page of the file is
        // read, and pages count in the tracer's memory for as long as they are mapped.
        let found = read_raw(path).and_then(|raw| ids_by_names(&raw, &wanted));
        let btf = Self::from_file(path)?;
        match found {
            Some((ids, count)) => btf.adopt(&wanted, ids, count),
            None => log::debug!("BTF names read one by one (unexpected BTF layout)"),
        }
        Ok(btf)
    }

    /// Takes the types found by [`ids_by_names`] as the answers for `wanted`, after checking
    /// them: both readers must agree on the number of types (btf_rs counts `void` as type
    /// 0) and on the name of every type found, or btf_rs answers, name by name.
    fn adopt(&self, wanted: &HashSet<&str>, mut ids: HashMap<&str, Vec<u32>>, count: u32) {
        let (_, last_id) = self.btf.base().type_id_range();
        if count != last_id {
            log::debug!("BTF names read one by one ({count} types, btf_rs has {last_id})");
            return;
        }
        let mut by_name = self.by_name.borrow_mut();
        for &name in wanted {
            let mut types = Vec::new();
            for id in ids.remove(name).unwrap_or_default() {
                let ty = self.btf.resolve_type_by_id(id).ok();
                let named = ty
                    .as_ref()
                    .and_then(|t| t.as_btf_type())
                    .and_then(|t| self.btf.resolve_name(t).ok());
                match ty {
                    Some(ty) if named.as_deref() == Some(name) => types.push(ty),
                    _ => {
                        log::debug!(
                            "BTF names read one by one (type {id} of {count} is not {name})"
                        );
                        return;
                    }
                }
            }
            by_name.insert(name.to_owned(), types);
        }
    }

    /// Every type called `name` (empty when there is none).
    fn types_named(&self, name: &str) -> Result<Vec<Type>> {
        if let Some(types) = self.by_name.borrow().get(name) {
            return Ok(types.clone());
        }
        let types = self
            .btf
            .resolve_types_by_name(name)
            .map_err(|e| anyhow!("reading BTF type {name}: {e}"))?;
        self.by_name
            .borrow_mut()
            .insert(name.to_owned(), types.clone());
        Ok(types)
    }

    fn struct_type(&self, name: &str) -> Result<btf_rs::Struct> {
        for ty in self.types_named(name)? {
            if let Type::Struct(s) = ty {
                return Ok(s);
            }
        }
        bail!("BTF has no struct {name}")
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn strip(&self, mut id: u32) -> Result<Type> {
        loop {
            let ty = self.btf.resolve_type_by_id(id)?;
            match &ty {
                Type::Typedef(_)
                | Type::Volatile(_)
                | Type::Const(_)
                | Type::Restrict(_)
                | Type::TypeTag(_) => {
                    id = ty
                        .as_btf_type()
                        .and_then(|t| t.get_type_id())
                        .ok_or_else(|| anyhow!("dangling BTF type {id}"))?;
                }
                _ => return Ok(ty),
            }
        }
    }

    fn size_of(&self, id: u32) -> Result<usize> {
        Ok(match self.strip(id)? {
            Type::Int(i) => i.size(),
            Type::Ptr(_) => 8,
            Type::Enum(e) => e.size(),
            Type::Enum64(e) => e.size(),
            Type::Struct(s) | Type::Union(s) => s.size(),
            Type::Array(a) => {
                let elem = a
                    .get_type_id()
                    .ok_or_else(|| anyhow!("array without type"))?;
                a.len() * self.size_of(elem)?
            }
            other => bail!("cannot size BTF {}", other.name()),
        })
    }

    /// Finds `name` among the members of `s`, looking through anonymous structs and unions.
    fn find_member(&self, s: &btf_rs::Struct, name: &str) -> Result<Option<Found>> {
        for m in &s.members {
            let member_name = self.btf.resolve_name(m).unwrap_or_default();
            let type_id = m.get_type_id().unwrap_or(0);
            if member_name == name {
                return Ok(Some(Found {
                    bit_offset: m.bit_offset(),
                    bitfield_size: m.bitfield_size().filter(|&b| b != 0),
                    type_id,
                }));
            }
            if member_name.is_empty()
                && let Type::Struct(inner) | Type::Union(inner) = self.strip(type_id)?
                && let Some(mut found) = self.find_member(&inner, name)?
            {
                found.bit_offset += m.bit_offset();
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Resolves a dotted member path (`__sk_common.skc_daddr`) inside `struct outer`.
    fn find_path(&self, outer: &str, path: &str) -> Result<Found> {
        let mut current = self.struct_type(outer)?;
        let mut bit_offset = 0;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            let found = self
                .find_member(&current, part)?
                .ok_or_else(|| anyhow!("struct {outer} has no member {path}"))?;
            bit_offset += found.bit_offset;
            if parts.peek().is_none() {
                return Ok(Found {
                    bit_offset,
                    ..found
                });
            }
            current = match self.strip(found.type_id)? {
                Type::Struct(s) | Type::Union(s) => s,
                _ => bail!("{outer}.{path}: {part} is not a struct"),
            };
        }
        bail!("empty member path")
    }

    /// Location of `outer.path`, ready for the kernel programs to read.
    pub fn field(&self, outer: &str, path: &str) -> Result<FieldLoc> {
        let found = self.find_path(outer, path)?;
        match found.bitfield_size {
            None => {
                if found.bit_offset % 8 != 0 {
                    bail!("{outer}.{path} is not byte aligned");
                }
                let size = self.size_of(found.type_id)?;
                Ok(FieldLoc {
                    offset: found.bit_offset / 8,
                    // Wider members (addresses, arrays) are read with a size of their own.
                    size: size.min(8) as u8,
                    ..FieldLoc::ABSENT
                })
            }
            Some(width) => {
                let byte = found.bit_offset / 8;
                let shift = found.bit_offset % 8;
                let bytes = (shift + width).div_ceil(8);
                let size = match bytes {
                    1 => 1,
                    2 => 2,
                    3 | 4 => 4,
                    _ => 8,
                };
                Ok(FieldLoc {
                    offset: byte,
                    size,
                    bit_shift: shift as u8,
                    bit_width: width as u8,
                    _pad: 0,
                })
            }
        }
    }

    /// Byte offset of `outer.path` (for container_of arithmetic on embedded structs).
    pub fn offset_of(&self, outer: &str, path: &str) -> Result<u32> {
        let found = self.find_path(outer, path)?;
        Ok(found.bit_offset / 8)
    }

    /// Value → name of every member of `enum name` (e.g. `sk_rst_reason`).
    pub fn enum_values(&self, name: &str) -> Result<HashMap<u64, String>> {
        let mut out = HashMap::new();
        for ty in self.types_named(name)? {
            match ty {
                Type::Enum(e) => {
                    for m in &e.members {
                        out.insert(u64::from(m.val()), self.btf.resolve_name(m)?);
                    }
                }
                Type::Enum64(e) => {
                    for m in &e.members {
                        out.insert(m.val(), self.btf.resolve_name(m)?);
                    }
                }
                _ => continue,
            }
            return Ok(out);
        }
        bail!("BTF has no enum {name}")
    }

    /// Value of one enumerator, e.g. `SOCK_DEAD` in `enum sock_flags`.
    pub fn enum_value(&self, name: &str, member: &str) -> Result<u64> {
        self.enum_values(name)?
            .into_iter()
            .find(|(_, n)| n == member)
            .map(|(v, _)| v)
            .with_context(|| format!("enum {name} has no {member}"))
    }

    /// Number of arguments of tracepoint `name` (None: the kernel has no such tracepoint).
    pub fn tracepoint_arity(&self, name: &str) -> Option<usize> {
        let typedef = tracepoint_typedef(name);
        let ty = self
            .types_named(&typedef)
            .ok()?
            .into_iter()
            .find(|t| matches!(t, Type::Typedef(_)))?;
        let ptr = self.strip(ty.as_btf_type()?.get_type_id()?).ok()?;
        let proto = self.strip(ptr.as_btf_type()?.get_type_id()?).ok()?;
        match proto {
            // The first parameter is the tracepoint's private `void *__data`.
            Type::FuncProto(p) => Some(p.parameters.len().saturating_sub(1)),
            _ => None,
        }
    }
}

/// The typedef through which BTF describes tracepoint `name`'s arguments.
pub fn tracepoint_typedef(name: &str) -> String {
    format!("btf_trace_{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel's BTF: the tests need it, as tracing does.
    fn kernel_btf() -> KernelBtf {
        KernelBtf::load().unwrap_or_else(|e| {
            panic!("{e:#}: the tests read this kernel's BTF, like `cargo xtask test` does")
        })
    }

    /// What every kernel since the tracer's oldest target lays out the same way, checked
    /// against what the resolver reads: nested paths, unions, bitfields and sizes.
    #[test]
    fn resolves_socket_members_on_this_kernel() {
        let btf = kernel_btf();
        let field = |outer: &str, path: &str| {
            btf.field(outer, path)
                .unwrap_or_else(|e| panic!("{outer}.{path}: {e:#}"))
        };
        // struct sock begins with its sock_common; a path through it finds the same member.
        assert_eq!(btf.offset_of("sock", "__sk_common").unwrap(), 0);
        let daddr = field("sock", "__sk_common.skc_daddr");
        assert_eq!(daddr, field("sock_common", "skc_daddr"));
        assert_eq!(daddr.size, 4);
        // __addrpair and __portpair: the local end follows the remote one.
        assert_eq!(
            field("sock_common", "skc_rcv_saddr").offset,
            daddr.offset + 4
        );
        let dport = field("sock_common", "skc_dport");
        assert_eq!(field("sock_common", "skc_num").offset, dport.offset + 2);
        assert_eq!(field("sock_common", "skc_family").size, 2);
        // icsk_ca_state is a 5-bit bitfield sharing a byte; icsk_retransmits is the next one.
        let ca_state = field("inet_connection_sock", "icsk_ca_state");
        assert_eq!((ca_state.size, ca_state.bit_width), (1, 5));
        let retransmits = field("inet_connection_sock", "icsk_retransmits");
        assert_eq!(retransmits.size, 1);
        assert_eq!(retransmits.offset, ca_state.offset + 1);
        // A tcp_sock is an inet_connection_sock first.
        assert_eq!(field("tcp_sock", "inet_conn.icsk_retransmits"), retransmits);
        assert_eq!(btf.tracepoint_arity("inet_sock_set_state"), Some(3));
        assert!(
            btf.enum_value("sock_flags", "SOCK_DEAD").is_ok(),
            "enum sock_flags"
        );
    }

    /// The one-pass reader finds, for every name start-up asks about, the ids btf_rs finds
    /// name by name, and counts the types as btf_rs does.
    #[test]
    fn one_pass_finds_what_lookups_by_name_find() {
        let btf = kernel_btf();
        let names: Vec<String> = crate::kernel::layout::type_names()
            .into_iter()
            .chain(["int", "no_such_type"].map(String::from))
            .collect();
        let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
        let raw = read_raw(Path::new(VMLINUX)).unwrap();
        let (ids, count) =
            ids_by_names(&raw, &wanted).expect("this kernel's BTF is read in one pass");
        assert_eq!(count, btf.btf.base().type_id_range().1);
        for name in wanted {
            let expected = btf.btf.resolve_ids_by_name(name).unwrap();
            assert_eq!(
                ids.get(name).cloned().unwrap_or_default(),
                expected,
                "{name}"
            );
        }
        assert!(!ids.contains_key("no_such_type"));
    }

    #[test]
    fn this_kernel_has_every_member_tracing_needs() {
        let (_, missing) =
            crate::kernel::layout::resolve(&kernel_btf()).unwrap_or_else(|e| panic!("{e:#}"));
        for m in &missing {
            eprintln!("this kernel lacks {}: {}", m.member, m.cost);
        }
    }
}
