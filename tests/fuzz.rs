//! Fuzzed archives: real backups (gzip and zstd, local store) of a real SecantusDB,
//! mutated by a seeded, deterministic generator, then handed to `verify --archive-only`
//! and, for a subset, to `restore`. Every damaged case must fail naming an object
//! (the archive, a member path, a namespace or the sidecar), never pass, never panic.
//!
//! Mutations: bytes flipped anywhere in the stored object, truncation anywhere, junk
//! appended, tar members duplicated, dropped, reordered, renamed, spliced in from the
//! other backup, their bodies flipped or cut, BSON length prefixes corrupted inside a
//! `.bson` member, the compression framing broken (gzip member or zstd frame magic,
//! headers, trailing CRC/ISIZE or checksum, members dropped, duplicated or swapped), and
//! the sidecar edited (values, keys, namespaces, JSON syntax), plus a consistent forgery
//! of the sidecar and the archive's own manifest. Most archive mutations also re-sign
//! the sidecar (its archive size and SHA-256 patched to the mutated bytes), so the
//! whole-archive digest cannot be what catches them: the per-member, per-namespace and
//! BSON checks must.
//!
//! What counts as damage is decided by an independent oracle in this file, not by the
//! tool: a case is *intact* only when the sidecar is, as JSON, the original one (its
//! `archive` digest aside), that digest matches the stored bytes, and the stored bytes
//! decode (with the plain flate2/zstd/tar readers) to the same files with the same
//! bodies, in any order (directory entries aside: `tar -x` creates them anyway). Such cases (a reordered tar re-signed, a flipped gzip MTIME
//! byte re-signed, a flip inside tar padding) hold exactly the data that was backed up:
//! `tar -x` and mongorestore do not depend on member order or padding, so an operator
//! would not call them damaged. They are counted and may pass; every other case must fail.
//!
//! The seed is fixed and printed (`INGEST_FUZZ_SEED` overrides it, `INGEST_FUZZ_CASES`
//! the number of verify cases), so a failure reproduces.
//!
//! Peer: SecantusDB (replica set, so the backups carry `oplog.bson`).

mod common;

use std::io::{Read, Write};
use std::ops::Range;
use std::path::Path;
use std::process::Output;

use bson::{doc, Document};
use common::Server;
use ingest_backup::sample::{self, SampleSpec};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

/// The default seed (printed; override with `INGEST_FUZZ_SEED`).
const SEED: u64 = 0x1b_ac_c0_de;
/// Verify cases run (override with `INGEST_FUZZ_CASES`).
const VERIFY_CASES: usize = 400;
/// Restore cases run, drawn from the damaged cases whose damage restore reads.
const RESTORE_CASES: usize = 24;

/// One tar member: path, entry type byte, body.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Member {
    path: String,
    kind: u8,
    body: Vec<u8>,
}

/// A real backup, as stored.
struct Backup {
    name: String,
    zstd: bool,
    archive: Vec<u8>,
    sidecar: Vec<u8>,
    members: Vec<Member>,
    root: String,
}

impl Backup {
    fn file_name(&self) -> String {
        format!("{}.{}", self.name, if self.zstd { "tar.zst" } else { "tar.gz" })
    }

    fn sidecar_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.sidecar).unwrap()
    }
}

/// One mutated copy of a backup.
struct Case {
    label: String,
    archive: Vec<u8>,
    sidecar: Vec<u8>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The members of a stored archive, read strictly to its end (every gzip member's CRC,
/// every zstd frame, nothing left over), or why it cannot be read.
fn decode(archive: &[u8], zstd: bool) -> Result<Vec<Member>, String> {
    let mut tar_bytes = Vec::new();
    if zstd {
        let mut decoder = zstd::stream::read::Decoder::new(archive).map_err(|e| e.to_string())?;
        decoder.read_to_end(&mut tar_bytes).map_err(|e| e.to_string())?;
    } else {
        let mut decoder = flate2::read::MultiGzDecoder::new(archive);
        decoder.read_to_end(&mut tar_bytes).map_err(|e| e.to_string())?;
    }
    let mut members = Vec::new();
    let mut tar = tar::Archive::new(&tar_bytes[..]);
    for entry in tar.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path().map_err(|e| e.to_string())?.to_string_lossy().into_owned();
        let kind = entry.header().entry_type().as_byte();
        let mut body = Vec::new();
        entry.read_to_end(&mut body).map_err(|e| e.to_string())?;
        members.push(Member { path, kind, body });
    }
    Ok(members)
}

/// A fresh archive of `members` (GNU headers; gzip or zstd, one stream).
fn encode(members: &[Member], zstd: bool) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for member in members {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::new(member.kind));
        header.set_size(member.body.len() as u64);
        header.set_mode(if member.kind == b'5' { 0o755 } else { 0o644 });
        builder.append_data(&mut header, &member.path, &member.body[..]).unwrap();
    }
    let tar_bytes = builder.into_inner().unwrap();
    if zstd {
        zstd::encode_all(&tar_bytes[..], 3).unwrap()
    } else {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&tar_bytes).unwrap();
        encoder.finish().unwrap()
    }
}

/// Byte ranges of the gzip members or zstd frames of a stored archive.
fn frames(archive: &[u8], zstd: bool) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut at = 0;
    while at < archive.len() {
        let len = if zstd {
            zstd::zstd_safe::find_frame_compressed_size(&archive[at..]).expect("a whole zstd frame")
        } else {
            let mut decoder = flate2::bufread::GzDecoder::new(&archive[at..]);
            std::io::copy(&mut decoder, &mut std::io::sink()).unwrap();
            archive.len() - at - decoder.into_inner().len()
        };
        ranges.push(at..at + len);
        at += len;
    }
    ranges
}

/// The sidecar with its archive size and SHA-256 patched to `archive`, as a forger
/// (or a re-upload of a damaged object with a regenerated sidecar) would leave it.
fn sign(sidecar: &[u8], archive: &[u8]) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_slice(sidecar).unwrap();
    value["archive"]["size"] = archive.len().into();
    value["archive"]["sha256"] = sha256_hex(archive).into();
    serde_json::to_vec_pretty(&value).unwrap()
}

/// The independent oracle (see the module docs): whether a case holds exactly the
/// original backup's data and manifest.
fn intact(case: &Case, base: &Backup) -> bool {
    let Ok(mut sidecar) = serde_json::from_slice::<serde_json::Value>(&case.sidecar) else { return false };
    let mut original = base.sidecar_json();
    let (Some(digest), Some(original_digest)) =
        (sidecar.as_object_mut().and_then(|o| o.remove("archive")), original.as_object_mut().unwrap().remove("archive"))
    else {
        return false;
    };
    if sidecar != original
        || digest["file"] != original_digest["file"]
        || digest["size"] != case.archive.len()
        || digest["sha256"] != sha256_hex(&case.archive).as_str()
        || digest.as_object().map(|o| o.len()) != original_digest.as_object().map(|o| o.len())
    {
        return false;
    }
    // Directory entries carry no data: `tar -x` creates a member's directories anyway,
    // and mongorestore reads files. A dropped or duplicated one is not damage.
    let files = |members: Vec<Member>| {
        let mut files: Vec<Member> = members.into_iter().filter(|m| m.kind != b'5').collect();
        files.sort();
        files
    };
    let Ok(members) = decode(&case.archive, base.zstd) else { return false };
    files(members) == files(base.members.clone())
}

/// Whether the damage is in something restore reads: the stored bytes against the
/// sidecar's digest, the sidecar itself, or a `.bson` member's bytes (oplog included).
fn restore_reads_damage(case: &Case, base: &Backup) -> bool {
    let Ok(sidecar) = serde_json::from_slice::<serde_json::Value>(&case.sidecar) else { return true };
    if sidecar["archive"]["size"] != case.archive.len() || sidecar["archive"]["sha256"] != sha256_hex(&case.archive).as_str() {
        return true;
    }
    let original = base.sidecar_json();
    for field in ["namespaces", "consistency", "dump_root", "name"] {
        if sidecar[field] != original[field] {
            return true;
        }
    }
    let Ok(members) = decode(&case.archive, base.zstd) else { return true };
    let bson = |members: &[Member]| {
        let mut bson: Vec<Member> = members.iter().filter(|m| m.path.ends_with(".bson")).cloned().collect();
        bson.sort();
        bson
    };
    bson(&members) != bson(&base.members)
}

/// Offsets of the top-level documents of a `.bson` body.
fn document_offsets(body: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 0;
    while at + 4 <= body.len() {
        offsets.push(at);
        at += i32::from_le_bytes(body[at..at + 4].try_into().unwrap()) as usize;
    }
    offsets
}

/// The families of mutation, drawn with equal weight.
const FAMILIES: [&str; 16] = [
    "flip",
    "truncate",
    "append",
    "duplicate-member",
    "drop-member",
    "reorder-members",
    "splice-member",
    "flip-in-member",
    "cut-member",
    "bson-length",
    "rename-member",
    "framing",
    "sidecar-value",
    "sidecar-key",
    "sidecar-syntax",
    "forgery",
];

/// One mutated copy of `base` (`other` is the other backup, for splices).
fn mutate(rng: &mut StdRng, base: &Backup, other: &Backup) -> Case {
    let family = FAMILIES[rng.random_range(0..FAMILIES.len())];
    let signed = rng.random_bool(0.7);
    let archive = &base.archive;
    let mut members = base.members.clone();
    let files: Vec<usize> = (0..members.len()).filter(|&i| members[i].kind != b'5').collect();
    let pick_file = |rng: &mut StdRng| files[rng.random_range(0..files.len())];
    let bson_files: Vec<usize> = files.iter().copied().filter(|&i| members[i].path.ends_with(".bson") && members[i].body.len() >= 5).collect();
    let (label, bytes): (String, Vec<u8>) = match family {
        "flip" => {
            let at = rng.random_range(0..archive.len());
            let xor = rng.random_range(1..=255u8);
            let mut bytes = archive.clone();
            bytes[at] ^= xor;
            (format!("byte {at} of {} xor {xor:#04x}", archive.len()), bytes)
        }
        "truncate" => {
            let len = rng.random_range(0..archive.len());
            (format!("cut to {len} of {} bytes", archive.len()), archive[..len].to_vec())
        }
        "append" => {
            let junk: Vec<u8> = if rng.random_bool(0.3) {
                encode(&[], base.zstd) // a whole, valid, empty stream: no data changes
            } else {
                (0..rng.random_range(1..64)).map(|_| rng.random()).collect()
            };
            let mut bytes = archive.clone();
            bytes.extend_from_slice(&junk);
            (format!("{} bytes appended", junk.len()), bytes)
        }
        "duplicate-member" => {
            let copy = members[pick_file(rng)].clone();
            let to = rng.random_range(0..=members.len());
            let label = format!("{} duplicated at {to}", copy.path);
            members.insert(to, copy);
            (label, encode(&members, base.zstd))
        }
        "drop-member" => {
            let at = rng.random_range(0..members.len());
            let gone = members.remove(at);
            (format!("{} dropped", gone.path), encode(&members, base.zstd))
        }
        "reorder-members" => {
            let (a, b) = (rng.random_range(0..members.len()), rng.random_range(0..members.len()));
            if rng.random_bool(0.5) {
                members.reverse();
                ("members reversed".into(), encode(&members, base.zstd))
            } else {
                members.swap(a, b);
                (format!("members {a} and {b} swapped"), encode(&members, base.zstd))
            }
        }
        "splice-member" => {
            let theirs: Vec<&Member> = other.members.iter().filter(|m| m.kind != b'5').collect();
            let mut spliced = theirs[rng.random_range(0..theirs.len())].clone();
            let label = if rng.random_bool(0.5) {
                // Under this backup's root, replacing (or joining) the member of the same name.
                spliced.path = spliced.path.replacen(&other.root, &base.root, 1).replacen(&other.name, &base.name, 1);
                match members.iter().position(|m| m.path == spliced.path) {
                    Some(at) if rng.random_bool(0.7) => {
                        members[at] = spliced.clone();
                        format!("{} replaced by the other backup's", spliced.path)
                    }
                    _ => {
                        members.push(spliced.clone());
                        format!("the other backup's {} added", spliced.path)
                    }
                }
            } else {
                let at = rng.random_range(0..=members.len());
                members.insert(at, spliced.clone());
                format!("the other backup's {} inserted at {at}", spliced.path)
            };
            (label, encode(&members, base.zstd))
        }
        "flip-in-member" => {
            let i = pick_file(rng);
            let at = rng.random_range(0..members[i].body.len().max(1));
            let xor = rng.random_range(1..=255u8);
            if members[i].body.is_empty() {
                members[i].body.push(xor);
            } else {
                members[i].body[at] ^= xor;
            }
            (format!("{} byte {at} xor {xor:#04x}", members[i].path), encode(&members, base.zstd))
        }
        "cut-member" => {
            let i = pick_file(rng);
            let len = rng.random_range(0..members[i].body.len().max(1));
            members[i].body.truncate(len);
            (format!("{} cut to {len} bytes", members[i].path), encode(&members, base.zstd))
        }
        "bson-length" => {
            let i = bson_files[rng.random_range(0..bson_files.len())];
            let offsets = document_offsets(&members[i].body);
            let at = offsets[rng.random_range(0..offsets.len())];
            let body = &mut members[i].body;
            let length = i32::from_le_bytes(body[at..at + 4].try_into().unwrap());
            let remaining = (body.len() - at) as i32;
            let (how, new) = match rng.random_range(0..8) {
                0 => ("+1", length + 1),
                1 => ("-1", length - 1),
                2 => ("0", 0),
                3 => ("4", 4),
                4 => ("-1 (negative)", -1),
                5 => ("i32::MAX", i32::MAX),
                6 => ("past the end", remaining + 1),
                _ => {
                    // The document's terminating zero instead.
                    body[at + length as usize - 1] = 0x01;
                    ("terminator", length)
                }
            };
            body[at..at + 4].copy_from_slice(&new.to_le_bytes());
            (format!("{} document at {at}: length {length} -> {how}", members[i].path), encode(&members, base.zstd))
        }
        "rename-member" => {
            let i = pick_file(rng);
            let mut path = members[i].path.clone().into_bytes();
            let at = rng.random_range(0..path.len());
            path[at] = if path[at] == b'x' { b'y' } else { b'x' };
            let label = format!("{} renamed", members[i].path);
            members[i].path = String::from_utf8(path).unwrap();
            (label, encode(&members, base.zstd))
        }
        "framing" => {
            let ranges = frames(archive, base.zstd);
            let r = ranges[rng.random_range(0..ranges.len())].clone();
            let mut bytes = archive.clone();
            let (what, bytes) = match rng.random_range(0..6) {
                0 => {
                    bytes[r.start + rng.random_range(0..4)] ^= 0x10;
                    ("magic", bytes)
                }
                1 => {
                    // gzip FLG / zstd frame header descriptor.
                    let at = r.start + if base.zstd { 4 } else { 3 };
                    bytes[at] ^= 1 << rng.random_range(0..8);
                    ("header flags", bytes)
                }
                2 => {
                    // gzip CRC32 + ISIZE / the end of a zstd frame (last block or checksum).
                    let at = r.end - 1 - rng.random_range(0..8.min(r.len()));
                    bytes[at] ^= rng.random_range(1..=255u8);
                    ("trailer", bytes)
                }
                3 if ranges.len() > 1 => {
                    bytes.drain(r.clone());
                    ("frame dropped", bytes)
                }
                4 => ("frame duplicated", [&archive[..r.end], &archive[r.clone()], &archive[r.end..]].concat()),
                _ if ranges.len() > 1 => {
                    let mut order: Vec<Range<usize>> = ranges.clone();
                    let (a, b) = (rng.random_range(0..order.len()), rng.random_range(0..order.len()));
                    order.swap(a, b);
                    ("frames swapped", order.into_iter().flat_map(|r| archive[r].to_vec()).collect())
                }
                _ => {
                    bytes.truncate(r.end - 1);
                    ("last byte of a frame cut", bytes)
                }
            };
            (format!("{what} of the {} frame at {}..{} of {}", if base.zstd { "zstd" } else { "gzip" }, r.start, r.end, ranges.len()), bytes)
        }
        "sidecar-value" | "sidecar-key" | "sidecar-syntax" => {
            let (label, sidecar) = edit_sidecar(rng, family, &base.sidecar);
            return Case { label: format!("{family}: {label}"), archive: archive.clone(), sidecar };
        }
        _ => {
            // A consistent forgery: one namespace's document count changed in both the
            // sidecar and the archive's own manifest; the archive re-signed.
            let mut sidecar = base.sidecar_json();
            let namespaces = sidecar["namespaces"].as_array().unwrap().len();
            let n = rng.random_range(0..namespaces);
            let field = ["documents", "bytes", "sha256", "content_hash"][rng.random_range(0..4)];
            let edited = &mut sidecar["namespaces"][n][field];
            let new = match &*edited {
                serde_json::Value::Number(number) => (number.as_u64().unwrap() + 1).into(),
                other => sha256_hex(other.as_str().unwrap().as_bytes()).into(),
            };
            *edited = new;
            let mut embedded = sidecar.clone();
            embedded.as_object_mut().unwrap().remove("archive");
            let manifest_member = format!("data/db/dump/{}.manifest.json", base.name);
            for member in &mut members {
                if member.path == manifest_member {
                    member.body = serde_json::to_vec_pretty(&embedded).unwrap();
                }
            }
            let bytes = encode(&members, base.zstd);
            let sidecar = sign(&serde_json::to_vec(&sidecar).unwrap(), &bytes);
            return Case { label: format!("forgery: namespaces[{n}].{field} in sidecar and archive manifest"), archive: bytes, sidecar };
        }
    };
    let sidecar = if signed { sign(&base.sidecar, &bytes) } else { base.sidecar.clone() };
    Case { label: format!("{family}{}: {label}", if signed { " (re-signed)" } else { "" }), archive: bytes, sidecar }
}

/// Every leaf of a JSON value: its JSON pointer.
fn leaves(value: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => map.iter().for_each(|(k, v)| leaves(v, format!("{at}/{k}"), out)),
        serde_json::Value::Array(items) if !items.is_empty() => items.iter().enumerate().for_each(|(i, v)| leaves(v, format!("{at}/{i}"), out)),
        _ => out.push(at),
    }
}

/// Every object member (key) of a JSON value: its parent pointer and key.
fn keys(value: &serde_json::Value, at: String, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| {
            out.push((at.clone(), k.clone()));
            keys(v, format!("{at}/{k}"), out);
        }),
        serde_json::Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| keys(v, format!("{at}/{i}"), out)),
        _ => {}
    }
}

fn edit_sidecar(rng: &mut StdRng, family: &str, original: &[u8]) -> (String, Vec<u8>) {
    let mut value: serde_json::Value = serde_json::from_slice(original).unwrap();
    match family {
        "sidecar-value" => {
            let mut all = Vec::new();
            leaves(&value, String::new(), &mut all);
            let pointer = &all[rng.random_range(0..all.len())];
            let leaf = value.pointer_mut(pointer).unwrap();
            let before = leaf.clone();
            *leaf = match &before {
                serde_json::Value::Number(n) if n.is_u64() => (n.as_u64().unwrap() ^ (1u64 << rng.random_range(0..8u32))).into(),
                serde_json::Value::Number(n) => (n.as_f64().unwrap() + 1.0).into(),
                serde_json::Value::String(s) if !s.is_empty() => {
                    let mut chars: Vec<char> = s.chars().collect();
                    let at = rng.random_range(0..chars.len());
                    chars[at] = if chars[at] == 'a' { 'b' } else { 'a' };
                    chars.into_iter().collect::<String>().into()
                }
                serde_json::Value::String(_) => "x".into(),
                serde_json::Value::Bool(b) => (!*b).into(),
                serde_json::Value::Null => 0.into(),
                serde_json::Value::Array(_) => serde_json::json!([0]),
                serde_json::Value::Object(_) => serde_json::json!({ "x": 0 }),
            };
            (format!("{pointer}: {before} -> {}", value.pointer(pointer).unwrap()), serde_json::to_vec_pretty(&value).unwrap())
        }
        "sidecar-key" => {
            let mut all = Vec::new();
            keys(&value, String::new(), &mut all);
            let (parent, key) = all[rng.random_range(0..all.len())].clone();
            let object = value.pointer_mut(&parent).unwrap().as_object_mut().unwrap();
            let label = match rng.random_range(0..3) {
                0 => {
                    object.remove(&key);
                    format!("{parent}/{key} removed")
                }
                1 => {
                    let moved = object.remove(&key).unwrap();
                    object.insert(format!("{key}_"), moved);
                    format!("{parent}/{key} renamed")
                }
                _ => {
                    object.insert(format!("unexpected_{key}"), 1.into());
                    format!("{parent}/unexpected_{key} added")
                }
            };
            (label, serde_json::to_vec_pretty(&value).unwrap())
        }
        _ => {
            let compact = serde_json::to_vec(&value).unwrap();
            match rng.random_range(0..6) {
                0 => {
                    let len = rng.random_range(0..compact.len() - 1);
                    (format!("cut to {len} bytes"), compact[..len].to_vec())
                }
                1 => {
                    let structural: Vec<usize> = (0..compact.len()).filter(|&i| b"{}[]:,\"".contains(&compact[i])).collect();
                    let at = structural[rng.random_range(0..structural.len())];
                    let mut bytes = compact.clone();
                    let gone = bytes.remove(at);
                    (format!("{:?} at {at} deleted", gone as char), bytes)
                }
                2 => ("empty".into(), Vec::new()),
                3 => ("null".into(), b"null".to_vec()),
                4 => ("not UTF-8".into(), [&b"{\"name\": \""[..], &[0xffu8, 0xfe][..], &b"\"}"[..]].concat()),
                _ => ("a second document appended".into(), [&compact[..], &b"{}"[..]].concat()),
            }
        }
    }
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Whether a finding's subject names an object: the archive, the sidecar, the
/// manifest, `oplog.bson`, a member path or a namespace.
fn names_object(subject: &str) -> bool {
    !subject.is_empty()
        && !subject.contains(char::is_whitespace)
        && (["archive", "sidecar", "manifest", "oplog.bson"].contains(&subject) || subject.contains('/') || subject.contains('.'))
}

/// Writes a case into a store directory of its own.
fn write_store(dir: &Path, base: &Backup, case: &Case) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(base.file_name()), &case.archive).unwrap();
    std::fs::write(dir.join(format!("{}.manifest.json", base.name)), &case.sidecar).unwrap();
}

/// Runs `verify --archive-only --json` on a case; returns whether it passed, failing
/// the test on a panic, a signal, or a failure that names nothing.
fn verify_case(dir: &Path, base: &Backup, context: &str) -> bool {
    let output = common::run(&["verify", &base.name, "--store", dir.to_str().unwrap(), "--archive-only", "--json"]);
    let stderr = stderr_of(&output);
    assert!(!stderr.contains("panicked"), "{context}: verify panicked:\n{stderr}");
    let code = output.status.code().unwrap_or_else(|| panic!("{context}: verify died of a signal ({}):\n{stderr}", output.status));
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{context}: --json printed no JSON document ({e}):\n{stderr}"));
    match code {
        0 => {
            assert_eq!(report["status"], "passed", "{context}: exit 0 without a pass: {report}");
            true
        }
        1 => {
            let named = match report["findings"].as_array() {
                Some(findings) => findings.iter().filter(|f| f["severity"] == "error").any(|f| names_object(f["subject"].as_str().unwrap_or(""))),
                None => report["error"].as_str().is_some_and(|e| e.contains(&base.name)),
            };
            assert!(named, "{context}: failed without naming an object: {report}\n{stderr}");
            assert!(stderr.contains("ERROR") || stderr.contains("error:"), "{context}: nothing on stderr says why:\n{stderr}");
            false
        }
        other => panic!("{context}: verify exited {other}, expected 0 or 1:\n{stderr}"),
    }
}

/// Documents in every collection of `database`.
async fn documents_in(client: &mongodb::Client, database: &str) -> u64 {
    let db = client.database(database);
    let mut total = 0;
    for name in db.list_collection_names().await.unwrap() {
        total += db.collection::<Document>(&name).count_documents(doc! {}).await.unwrap();
    }
    total
}

/// Runs `restore` of a damaged case into a database of its own; it must refuse
/// before writing or stop with a clear error, and never exit 0 or panic.
async fn restore_case(dir: &Path, base: &Backup, server: &Server, target_db: &str, context: &str) -> bool {
    let args =
        ["restore", &base.name, "--store", dir.to_str().unwrap(), "--uri", &server.uri(), "--ns-from", "ingest", "--ns-to", target_db, "--json"];
    let output = common::run(&args);
    let stderr = stderr_of(&output);
    assert!(!stderr.contains("panicked"), "{context}: restore panicked:\n{stderr}");
    let code = output.status.code().unwrap_or_else(|| panic!("{context}: restore died of a signal ({}):\n{stderr}", output.status));
    assert_eq!(code, 1, "{context}: a damaged backup must not restore cleanly (exit {code}):\n{stderr}");
    let written = documents_in(&server.client().await, target_db).await;
    // A refusal before writing may name whatever the target refused (a namespace whose
    // edited options it rejects); once documents are written, the error must name the
    // damaged object.
    let said_why = stderr.lines().any(|l| {
        (l.starts_with("error: ") || l.starts_with("PROBLEM: "))
            && (written == 0 || ["archive", "manifest", "sidecar", ".bson", &base.name].iter().any(|object| l.contains(object)))
    });
    assert!(said_why, "{context}: restore exited 1 without a clear error naming what is damaged ({written} documents written):\n{stderr}");
    written == 0
}

async fn load(server: &Server, seed: u64, notes: Range<i32>) {
    let client = server.client().await;
    sample::load(&client, &SampleSpec { database: "ingest".into(), target_bytes: 160 << 10, seed }).await.unwrap();
    let notes = notes.map(|i| doc! { "_id": i, "text": format!("note {i} of seed {seed}"), "nested": { "n": i, "list": [i, "x"] } });
    client.database("ingest").collection::<Document>("notes").insert_many(notes).await.unwrap();
}

fn make_backup(server: &Server, store: &Path, compression: &str) -> Backup {
    let result = common::backup(&server.uri(), store, &["--compression", compression]);
    let name = result["name"].as_str().unwrap().to_string();
    let zstd = compression == "zstd";
    let file = store.join(format!("{name}.{}", if zstd { "tar.zst" } else { "tar.gz" }));
    let archive = std::fs::read(file).unwrap();
    let sidecar = std::fs::read(store.join(format!("{name}.manifest.json"))).unwrap();
    let members = decode(&archive, zstd).expect("a fresh backup decodes");
    let root = serde_json::from_slice::<serde_json::Value>(&sidecar).unwrap()["dump_root"].as_str().unwrap().to_string();
    assert!(members.iter().any(|m| m.path.ends_with("/oplog.bson")), "a replica-set backup carries oplog.bson");
    Backup { name, zstd, archive, sidecar, members, root }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread")]
async fn fuzzed_archives_never_pass_and_never_panic() {
    let seed = env_number("INGEST_FUZZ_SEED", SEED);
    let cases = env_number("INGEST_FUZZ_CASES", VERIFY_CASES as u64) as usize;
    let server = Server::start();
    let stores = tempfile::tempdir().unwrap();
    load(&server, 1, 0..40).await;
    let gzip = make_backup(&server, &stores.path().join("gzip"), "gzip");
    // The second backup holds more (a second sample pass, more notes), so its members
    // spliced into the first are damage.
    load(&server, 2, 40..60).await;
    let zstd = make_backup(&server, &stores.path().join("zstd"), "zstd");
    for (backup, dir) in [(&gzip, "gzip"), (&zstd, "zstd")] {
        let unchanged = Case { label: "unchanged".into(), archive: backup.archive.clone(), sidecar: backup.sidecar.clone() };
        assert!(intact(&unchanged, backup), "the oracle accepts the backup as written");
        assert!(verify_case(&stores.path().join(dir), backup, "the intact backup"), "the intact {} passes", backup.file_name());
        assert!(frames(&backup.archive, backup.zstd).len() > 1, "the tool writes several gzip members / zstd frames");
    }
    eprintln!("fuzz: seed {seed} (INGEST_FUZZ_SEED={seed} reproduces)");

    let mut rng = StdRng::seed_from_u64(seed);
    let work = tempfile::tempdir().unwrap();
    let (mut verified, mut restored, mut refused_before_writing, mut left_intact) = (0, 0, 0, 0);
    let mut per_family = std::collections::BTreeMap::<String, usize>::new();
    let mut n = 0;
    while verified + left_intact < cases {
        n += 1;
        let (base, other) = if rng.random_bool(0.5) { (&gzip, &zstd) } else { (&zstd, &gzip) };
        let case = mutate(&mut rng, base, other);
        if case.archive == base.archive && case.sidecar == base.sidecar {
            continue;
        }
        let context = format!("case {n} (seed {seed}) {}: {}", base.file_name(), case.label);
        let dir = work.path().join(format!("case-{n}"));
        write_store(&dir, base, &case);
        let passed = verify_case(&dir, base, &context);
        if intact(&case, base) {
            // The same data and manifest as the backup: passing is right, failing is
            // merely cautious.
            left_intact += 1;
        } else {
            assert!(!passed, "{context}: FALSE PASS: verify --archive-only accepted a damaged backup");
            verified += 1;
            *per_family.entry(case.label.split([':', ' ']).next().unwrap().to_string()).or_default() += 1;
            if restored < RESTORE_CASES && restore_reads_damage(&case, base) && rng.random_bool(0.25) {
                let target = format!("fuzz_{n}");
                if restore_case(&dir, base, &server, &target, &context).await {
                    refused_before_writing += 1;
                }
                restored += 1;
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!("fuzz: damaged cases per family: {per_family:?}");
    eprintln!(
        "fuzz: {verified} cases (verify), {restored} cases (restore, {refused_before_writing} refused before writing), {left_intact} mutations left the data intact, seed {seed}"
    );
    println!("fuzz: {verified} cases (verify), {restored} cases (restore), seed {seed}");
    assert!(restored >= RESTORE_CASES / 2, "too few restore cases ran: {restored}");
    assert!(per_family.len() >= FAMILIES.len() - 1, "every family produced damage: {per_family:?}");
}

/// Regression (found by the fuzzer): a `.bson` member cut short stopped the restore
/// with a clear error, then the driver's pool worker panicked as the process exited
/// (`connection_requester.rs: SendError`), because the client was dropped with the
/// runtime. The restore now closes the client first.
#[tokio::test(flavor = "multi_thread")]
async fn restore_stopped_by_a_damaged_member_does_not_panic_the_driver() {
    let server = Server::start();
    load(&server, 3, 0..40).await;
    let store = tempfile::tempdir().unwrap();
    let backup = make_backup(&server, store.path(), "gzip");
    let mut members = backup.members.clone();
    let cut = members.iter_mut().find(|m| m.path.ends_with("/ingest/file.bson")).expect("ingest.file is dumped");
    cut.body.truncate(cut.body.len() - 41);
    let archive = encode(&members, false);
    let case = Case { label: "file.bson cut".into(), sidecar: sign(&backup.sidecar, &archive), archive };
    write_store(store.path(), &backup, &case);
    restore_case(store.path(), &backup, &server, "regression", "a cut ingest/file.bson").await;
}
