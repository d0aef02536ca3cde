//! Reads a large JSON document in bounded memory: the elements of chosen arrays (a stats
//! document's `flows[]` and `storm.flows[]`, a million rows and half a gigabyte) are handed
//! out one at a time as byte slices, and the rest of the document (small) is kept as text
//! with those arrays left empty, to be parsed whole.
//!
//! The scanner only finds boundaries (strings, nesting); each element and the rest are then
//! parsed by serde_json, which checks them. Inside an element it jumps between quotes and
//! braces with memchr.
//!
//! Must never: panic or grow without bound on any input (an element or the rest larger than
//! its limit is an error).

use std::io::Read;

/// Largest element handed out.
pub const MAX_ELEMENT: usize = 1 << 20;
/// Largest rest of the document.
pub const MAX_REST: usize = 256 << 20;

const CHUNK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not JSON: {0}")]
    Syntax(&'static str),
    #[error("an element of {0}[] is larger than {MAX_ELEMENT} bytes")]
    ElementTooLarge(String),
    #[error("the document without its row arrays is larger than {MAX_REST} bytes")]
    RestTooLarge,
}

#[derive(Clone, Debug)]
struct Level {
    is_obj: bool,
    expect_key: bool,
    key: Vec<u8>,
}

/// Which array to stream: the key path from the top object, e.g. `["storm", "flows"]`.
pub type Path<'a> = &'a [&'a str];

/// Reads `r` to its end. For each element of an array at one of `paths`, calls
/// `on_element(path index, bytes)`; returns the rest of the document (those arrays as `[]`).
pub fn scan<R: Read>(
    mut r: R,
    paths: &[Path<'_>],
    mut on_element: impl FnMut(usize, &[u8]) -> Result<(), ScanError>,
) -> Result<Vec<u8>, ScanError> {
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK * 2);
    let mut pos = 0usize;
    let mut eof = false;
    let mut rest: Vec<u8> = Vec::new();
    let mut stack: Vec<Level> = Vec::new();
    let mut in_str = false;
    let mut esc = false;
    let mut capturing = false;

    // Makes at least one more byte available at `pos` unless the input has ended; keeps
    // the bytes from `keep` on.
    fn fill<R: Read>(
        r: &mut R,
        buf: &mut Vec<u8>,
        pos: &mut usize,
        keep: usize,
        eof: &mut bool,
    ) -> Result<usize, ScanError> {
        // Drop what is consumed (before `keep`).
        let keep = keep.min(*pos).min(buf.len());
        buf.drain(..keep);
        *pos -= keep;
        let old = buf.len();
        buf.resize(old + CHUNK, 0);
        let n = loop {
            match r.read(buf.get_mut(old..).unwrap_or(&mut [])) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    buf.truncate(old);
                    return Err(e.into());
                }
            }
        };
        buf.truncate(old + n);
        if n == 0 {
            *eof = true;
        }
        Ok(keep)
    }

    loop {
        if pos >= buf.len() {
            if eof {
                break;
            }
            fill(&mut r, &mut buf, &mut pos, usize::MAX, &mut eof)?;
            continue;
        }
        let b = buf.get(pos).copied().unwrap_or(0);
        pos += 1;
        if rest.len() >= MAX_REST {
            return Err(ScanError::RestTooLarge);
        }
        rest.push(b);
        if in_str {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
                if capturing {
                    capturing = false;
                }
            } else if capturing {
                if let Some(l) = stack.last_mut() {
                    if l.key.len() < 64 {
                        l.key.push(b);
                    }
                }
            }
            continue;
        }
        match b {
            b'"' => {
                in_str = true;
                if let Some(l) = stack.last_mut() {
                    if l.is_obj && l.expect_key {
                        l.key.clear();
                        capturing = true;
                    }
                }
            }
            b'{' => stack.push(Level {
                is_obj: true,
                expect_key: true,
                key: Vec::new(),
            }),
            b'[' => {
                let which = paths.iter().position(|p| {
                    p.len() == stack.len()
                        && p.iter()
                            .zip(&stack)
                            .all(|(k, l)| l.is_obj && !l.expect_key && l.key == k.as_bytes())
                });
                let Some(which) = which else {
                    stack.push(Level {
                        is_obj: false,
                        expect_key: false,
                        key: Vec::new(),
                    });
                    continue;
                };
                // Stream this array's elements; the rest gets `[]` (its `[` is in).
                let name = paths.get(which).map(|p| p.join(".")).unwrap_or_default();
                loop {
                    // Skip blanks and commas between elements.
                    while let Some(&c) = buf.get(pos) {
                        if matches!(c, b' ' | b'\n' | b'\r' | b'\t' | b',') {
                            pos += 1;
                        } else {
                            break;
                        }
                    }
                    let Some(&c) = buf.get(pos) else {
                        if eof {
                            return Err(ScanError::Syntax("the document ends inside an array"));
                        }
                        fill(&mut r, &mut buf, &mut pos, usize::MAX, &mut eof)?;
                        continue;
                    };
                    if c == b']' {
                        pos += 1;
                        break;
                    }
                    if c != b'{' {
                        return Err(ScanError::Syntax(
                            "a row array holds something other than objects",
                        ));
                    }
                    // One object, from `pos`: find its closing brace.
                    let mut at = pos + 1;
                    let mut depth = 1usize;
                    let mut s_in = false;
                    loop {
                        let hay = buf.get(at..).unwrap_or(&[]);
                        let found = if s_in {
                            memchr::memchr2(b'"', b'\\', hay)
                        } else {
                            memchr::memchr3(b'"', b'{', b'}', hay)
                        };
                        match found {
                            Some(i) => {
                                let c = hay.get(i).copied().unwrap_or(0);
                                at += i + 1;
                                if s_in {
                                    if c == b'\\' {
                                        // Skip the escaped byte (it may be a quote).
                                        if at >= buf.len() {
                                            // Refill first, keeping the element.
                                            at -= 1;
                                            if eof {
                                                return Err(ScanError::Syntax(
                                                    "the document ends inside a string",
                                                ));
                                            }
                                            let dropped = {
                                                let keep = pos;
                                                fill(&mut r, &mut buf, &mut pos, keep, &mut eof)?
                                            };
                                            at -= dropped;
                                            continue;
                                        }
                                        at += 1;
                                    } else {
                                        s_in = false;
                                    }
                                } else if c == b'"' {
                                    s_in = true;
                                } else if c == b'{' {
                                    depth += 1;
                                } else {
                                    depth -= 1;
                                    if depth == 0 {
                                        break;
                                    }
                                }
                            }
                            None => {
                                at = buf.len();
                                if at - pos > MAX_ELEMENT {
                                    return Err(ScanError::ElementTooLarge(name));
                                }
                                if eof {
                                    return Err(ScanError::Syntax(
                                        "the document ends inside a row",
                                    ));
                                }
                                let dropped = {
                                    let keep = pos;
                                    fill(&mut r, &mut buf, &mut pos, keep, &mut eof)?
                                };
                                at -= dropped;
                            }
                        }
                    }
                    let elem = buf.get(pos..at).unwrap_or(&[]);
                    if elem.len() > MAX_ELEMENT {
                        return Err(ScanError::ElementTooLarge(name));
                    }
                    on_element(which, elem)?;
                    pos = at;
                }
                rest.push(b']');
            }
            // The guard pops the level (a balanced close falls through to `_`).
            b'}' | b']' if stack.pop().is_none() => {
                return Err(ScanError::Syntax("unbalanced brackets"));
            }
            b':' => {
                if let Some(l) = stack.last_mut() {
                    l.expect_key = false;
                }
            }
            b',' => {
                if let Some(l) = stack.last_mut() {
                    if l.is_obj {
                        l.expect_key = true;
                    }
                }
            }
            _ => {}
        }
    }
    if in_str || !stack.is_empty() {
        return Err(ScanError::Syntax("the document ends early"));
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(doc: &str, chunked: bool) -> (String, Vec<(usize, String)>) {
        let mut got = Vec::new();
        struct Slow<'a>(&'a [u8]);
        impl Read for Slow<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(out.len()).min(3);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let paths: &[Path<'_>] = &[&["flows"], &["storm", "flows"]];
        let on = |i: usize, e: &[u8]| {
            got.push((i, String::from_utf8(e.to_vec()).unwrap()));
            Ok(())
        };
        let rest = if chunked {
            scan(Slow(doc.as_bytes()), paths, on).unwrap()
        } else {
            scan(doc.as_bytes(), paths, on).unwrap()
        };
        (String::from_utf8(rest).unwrap(), got)
    }

    #[test]
    fn streams_the_row_arrays_and_keeps_the_rest() {
        let doc = r#"{"a": [1, {"flows": [9]}], "flows": [ {"x": "}{\"", "y": {"z": [1]}},
            {"k": 2} ], "storm": {"flows": [{"s": 1}], "per_second": [{"t": 1}]},
            "z": "flows"}"#;
        for chunked in [false, true] {
            let (rest, got) = run(doc, chunked);
            let v: serde_json::Value = serde_json::from_str(&rest).unwrap();
            assert_eq!(v["flows"], serde_json::json!([]));
            assert_eq!(v["storm"]["flows"], serde_json::json!([]));
            assert_eq!(v["storm"]["per_second"][0]["t"], 1);
            assert_eq!(v["a"][1]["flows"][0], 9);
            assert_eq!(got.len(), 3);
            assert_eq!(got[0], (0, r#"{"x": "}{\"", "y": {"z": [1]}}"#.to_string()));
            assert_eq!(got[1], (0, r#"{"k": 2}"#.to_string()));
            assert_eq!(got[2], (1, r#"{"s": 1}"#.to_string()));
        }
    }

    #[test]
    fn bad_documents_are_errors_not_panics() {
        let paths: &[Path<'_>] = &[&["flows"]];
        for doc in [
            "{\"flows\": [{\"a\": 1}",
            "{\"flows\": [1]}",
            "{\"flows\": [{\"a\": \"\\",
            "}}}",
            "{\"a\": \"",
            "{",
        ] {
            assert!(scan(doc.as_bytes(), paths, |_, _| Ok(())).is_err(), "{doc}");
        }
        // Arbitrary bytes never panic.
        let mut x: u32 = 1;
        for len in 0..400usize {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    b"{}[]\",:\\ flows"[(x >> 16) as usize % 14]
                })
                .collect();
            let _ = scan(&bytes[..], paths, |_, _| Ok(()));
        }
    }
}
