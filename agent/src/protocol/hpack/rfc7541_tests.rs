//! RFC 7541 Appendix C, one test per example; vectors live in
//! `agent/tests/fixtures/hpack/` (format described in its README).

use super::{Decoder, HeaderField};

#[derive(Default)]
struct Step {
    block: Vec<u8>,
    headers: Vec<HeaderField>,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    size: usize,
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("fixture hex"))
        .collect()
}

fn pair(s: &str) -> (Vec<u8>, Vec<u8>) {
    let (n, v) = s.split_once('|').expect("fixture NAME|VALUE");
    (n.as_bytes().to_vec(), v.as_bytes().to_vec())
}

fn parse_fixture(text: &str) -> (usize, Vec<Step>) {
    let mut table_size = 4096;
    let mut steps = Vec::new();
    let mut cur = Step::default();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (directive, arg) = line.split_once(' ').unwrap_or((line, ""));
        match directive {
            "table_size" => table_size = arg.parse().expect("table_size"),
            "block" => cur.block = hex(arg),
            "+" => cur.block.extend(hex(arg)),
            "header" => {
                let (n, v) = pair(arg);
                cur.headers.push(HeaderField::new(n, v));
            }
            "entry" => cur.entries.push(pair(arg)),
            "size" => {
                cur.size = arg.parse().expect("size");
                steps.push(std::mem::take(&mut cur));
            }
            other => panic!("unknown fixture directive {other}"),
        }
    }
    (table_size, steps)
}

fn run(text: &str) {
    let (table_size, steps) = parse_fixture(text);
    assert!(!steps.is_empty());
    let mut d = Decoder::with_max_size(table_size);
    for (i, step) in steps.iter().enumerate() {
        let got = d
            .decode(&step.block)
            .unwrap_or_else(|e| panic!("step {i}: {e}"));
        assert_eq!(got, step.headers, "step {i} headers");
        let table: Vec<(Vec<u8>, Vec<u8>)> = d
            .table()
            .iter()
            .map(|(n, v)| (n.expect("known name").to_vec(), v.to_vec()))
            .collect();
        assert_eq!(table, step.entries, "step {i} dynamic table");
        assert_eq!(d.table().size(), step.size, "step {i} table size");
        assert!(d.table().is_fully_known());
    }
    assert_eq!(
        d.stats().unknown_refs + d.stats().invalid_refs + d.stats().errors,
        0
    );
}

macro_rules! rfc7541_example {
    ($($name:ident => $file:literal,)*) => {$(
        #[test]
        fn $name() {
            run(include_str!(concat!("../../../tests/fixtures/hpack/", $file)));
        }
    )*};
}

rfc7541_example! {
    c2_1_literal_with_indexing => "c2_1.txt",
    c2_2_literal_without_indexing => "c2_2.txt",
    c2_3_literal_never_indexed => "c2_3.txt",
    c2_4_indexed => "c2_4.txt",
    c3_requests_without_huffman => "c3.txt",
    c4_requests_with_huffman => "c4.txt",
    c5_responses_without_huffman_evicting => "c5.txt",
    c6_responses_with_huffman_evicting => "c6.txt",
}
