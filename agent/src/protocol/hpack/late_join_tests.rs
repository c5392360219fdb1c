//! Late-join semantics: pre-attach entries are unknown, post-attach ones resolve.

use super::{Decoder, HeaderField};

const PATH: &str = "/yandex.cloud.priv.iam.v1.TokenAgent/GetToken";

/// Literal with incremental indexing, literal name, raw strings.
fn insert_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x40);
    for s in [name, value] {
        assert!(s.len() < 127);
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
}

/// Literal with incremental indexing whose name is indexed (< 63).
fn insert_with_name_ref(out: &mut Vec<u8>, name_index: u8, value: &str) {
    out.push(0x40 | name_index);
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
}

#[test]
fn pre_attach_references_are_unknown_and_post_attach_inserts_resolve() {
    let mut d = Decoder::new_late();
    // `:method POST`, then index 62 (`:path`, inserted before we attached).
    let got = d.decode(&[0x83, 0xbe]).expect("decode");
    assert_eq!(
        got,
        vec![
            HeaderField::new(":method", "POST"),
            HeaderField::Unknown { index: 62 }
        ]
    );
    assert_eq!(d.stats().unknown_refs, 1);

    // A new insert after attach takes index 62; the pre-attach entry moves to 63.
    let mut block = Vec::new();
    insert_literal(&mut block, "x-request-id", "r-1");
    block.extend_from_slice(&[0xbe, 0xbf]);
    let got = d.decode(&block).expect("decode");
    assert_eq!(got[1], HeaderField::new("x-request-id", "r-1"));
    assert_eq!(got[2], HeaderField::Unknown { index: 63 });
    assert!(!d.table().is_fully_known());
}

#[test]
fn name_reference_to_unknown_entry_inserts_an_unknown_name() {
    let mut d = Decoder::new_late();
    let mut block = Vec::new();
    insert_with_name_ref(&mut block, 62, "v"); // name = pre-attach entry
    block.push(0xbe); // the entry just inserted: known value, unknown name
    let got = d.decode(&block).expect("decode");
    assert_eq!(
        got,
        vec![
            HeaderField::Unknown { index: 62 },
            HeaderField::Unknown { index: 62 }
        ]
    );
    assert_eq!(d.table().len(), 1);
}

#[test]
fn size_update_to_zero_makes_the_table_fully_known() {
    let mut d = Decoder::new_late();
    let mut block = vec![0x20, 0x3f, 0xe1, 0x1f]; // size 0, then size 4096
    insert_literal(&mut block, ":path", PATH);
    block.push(0xbe);
    let got = d.decode(&block).expect("decode");
    assert_eq!(got[1], HeaderField::new(":path", PATH));
    assert!(d.table().is_fully_known());
    // Beyond the known entries of a fully known table: invalid, still Unknown.
    let got = d.decode(&[0xbf]).expect("decode");
    assert_eq!(got, vec![HeaderField::Unknown { index: 63 }]);
    assert_eq!(d.stats().invalid_refs, 1);
}

#[test]
fn known_inserts_push_the_unknown_tail_out() {
    let mut d = Decoder::new_late(); // assumes the default 4096-octet table
    let value = "v".repeat(100);
    let mut inserted = 0;
    while !d.table().is_fully_known() {
        let mut block = Vec::new();
        insert_literal(&mut block, "grpc-timeout", &value);
        d.decode(&block).expect("decode");
        inserted += 1;
        assert!(inserted < 100, "tail never evicted");
    }
    // Entries of 32 + 12 + 100 = 144 octets: 28 fit in 4096 with room for an
    // older 32-octet entry; the 29th insert must evict, oldest (unknown) first.
    assert_eq!(inserted, 29);
    assert_eq!(d.table().unknown_entries_bound(), 0);
}

#[test]
fn gap_makes_known_entries_unknown_again() {
    let mut d = Decoder::new();
    let mut block = Vec::new();
    insert_literal(&mut block, ":path", PATH);
    d.decode(&block).expect("decode");
    assert_eq!(
        d.decode(&[0xbe]).expect("decode"),
        vec![HeaderField::new(":path", PATH)]
    );
    d.lose_sync();
    assert_eq!(
        d.decode(&[0xbe]).expect("decode"),
        vec![HeaderField::Unknown { index: 62 }]
    );
}

#[test]
fn fresh_decoder_knows_everything() {
    let mut d = Decoder::new();
    assert!(d.table().is_fully_known());
    assert_eq!(
        d.decode(&[0xbe]).expect("decode"),
        vec![HeaderField::Unknown { index: 62 }]
    );
    assert_eq!((d.stats().unknown_refs, d.stats().invalid_refs), (0, 1));
}

#[test]
fn errors_lose_sync_and_never_panic() {
    let mut d = Decoder::new();
    assert!(d.decode(&[0x80]).is_err()); // index 0
    assert!(d.decode(&[0x40, 0x05, b'a']).is_err()); // truncated
    assert!(!d.table().is_fully_known());
    assert_eq!(d.stats().errors, 2);
}
