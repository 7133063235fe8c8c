//! The worked example in `docs/protocol.md`, checked byte for byte.

use mitogen_wire::{decode, encode, Deframer, Header, DEFAULT_MAX_MESSAGE_SIZE};

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn worked_example_frame() {
    let body = encode(&("hi", 7u32)).unwrap();
    assert_eq!(hex(&body), "02 68 69 07");

    let header = Header {
        flags: 0,
        dst_id: 1,
        src_id: 0,
        auth_id: 0,
        handle: 1000,
        reply_to: 0,
        length: body.len() as u32,
    };
    let mut frame = header.to_bytes().to_vec();
    frame.extend_from_slice(&body);
    assert_eq!(
        hex(&frame),
        "4d 47 02 00 \
         00 00 00 01 \
         00 00 00 00 \
         00 00 00 00 \
         00 00 03 e8 \
         00 00 00 00 \
         00 00 00 04 \
         02 68 69 07"
    );

    let mut d = Deframer::new(DEFAULT_MAX_MESSAGE_SIZE);
    d.push(&frame);
    let f = d.next_frame().unwrap().unwrap();
    assert_eq!(f.header, header);
    assert_eq!(
        decode::<(String, u32)>(&f.body).unwrap(),
        ("hi".to_string(), 7)
    );
}

#[test]
fn dead_message_example() {
    // The worked example, dead with reason "gone": the reason is raw UTF-8,
    // not postcard (no length prefix).
    let reason = b"gone";
    let header = Header {
        flags: mitogen_wire::FLAG_DEAD,
        dst_id: 1,
        src_id: 0,
        auth_id: 0,
        handle: 1000,
        reply_to: 0,
        length: reason.len() as u32,
    };
    let mut frame = header.to_bytes().to_vec();
    frame.extend_from_slice(reason);
    assert_eq!(
        hex(&frame),
        "4d 47 02 01 \
         00 00 00 01 \
         00 00 00 00 \
         00 00 00 00 \
         00 00 03 e8 \
         00 00 00 00 \
         00 00 00 04 \
         67 6f 6e 65"
    );
    let mut d = Deframer::new(DEFAULT_MAX_MESSAGE_SIZE);
    d.push(&frame);
    let f = d.next_frame().unwrap().unwrap();
    assert!(f.header.is_dead());
    assert_eq!(std::str::from_utf8(&f.body).unwrap(), "gone");
    assert_eq!(DEFAULT_MAX_MESSAGE_SIZE, 0x0800_0000);
}

#[test]
fn postcard_encoding_facts() {
    // Facts stated in docs/protocol.md about the body encoding.
    assert_eq!(encode(&0u32).unwrap(), [0x00]);
    assert_eq!(encode(&127u32).unwrap(), [0x7f]);
    assert_eq!(encode(&128u32).unwrap(), [0x80, 0x01]);
    assert_eq!(encode(&300u32).unwrap(), [0xac, 0x02]);
    assert_eq!(encode(&-1i32).unwrap(), [0x01], "zigzag");
    assert_eq!(encode(&1i32).unwrap(), [0x02], "zigzag");
    assert_eq!(encode(&7u8).unwrap(), [0x07], "u8 is one raw byte");
    assert_eq!(encode(&true).unwrap(), [0x01]);
    assert_eq!(encode(&Some(5u8)).unwrap(), [0x01, 0x05]);
    assert_eq!(encode(&None::<u8>).unwrap(), [0x00]);
    assert_eq!(encode(&vec![1u8, 2, 3]).unwrap(), [0x03, 1, 2, 3]);
    assert_eq!(encode("hi").unwrap(), [0x02, b'h', b'i']);
    assert_eq!(encode(&()).unwrap(), [] as [u8; 0]);
    assert_eq!(encode(&-2i8).unwrap(), [0xfe], "i8 is one raw byte");
    assert_eq!(
        encode(&1.0f32).unwrap(),
        [0x00, 0x00, 0x80, 0x3f],
        "LE IEEE"
    );
    assert_eq!(encode(&'é').unwrap(), [0x02, 0xc3, 0xa9], "char as a str");
    assert_eq!(encode(&(1u8, 2u16, "x")).unwrap(), [0x01, 0x02, 0x01, b'x']);
    assert_eq!(
        encode(&std::collections::BTreeMap::from([(1u32, true)])).unwrap(),
        [0x01, 0x01, 0x01]
    );
    #[derive(serde::Serialize)]
    struct S {
        a: u32,
        b: Option<String>,
    }
    #[derive(serde::Serialize)]
    enum E {
        A,
        B(u16),
        C { x: bool },
    }
    assert_eq!(
        encode(&S { a: 1, b: None }).unwrap(),
        [0x01, 0x00],
        "no names"
    );
    assert_eq!(encode(&E::A).unwrap(), [0x00], "variant index");
    assert_eq!(encode(&E::B(300)).unwrap(), [0x01, 0xac, 0x02]);
    assert_eq!(encode(&E::C { x: true }).unwrap(), [0x02, 0x01]);
    assert!(decode::<bool>(&[0x02]).is_err(), "bool is 0 or 1 only");
    // Overlong varints are accepted on decode; encoders emit the shortest form.
    assert_eq!(decode::<u32>(&[0x80, 0x00]).unwrap(), 0);
    // Exactly one value per body.
    assert!(decode::<u32>(&[0x01, 0x00]).is_err());
    // ...unless the body is read as a prefix followed by raw bytes.
    let (n, rest) = mitogen_wire::decode_prefix::<u32>(&[0x01, 0xaa, 0xbb]).unwrap();
    assert_eq!((n, rest), (1, &[0xaa, 0xbb][..]));
}
