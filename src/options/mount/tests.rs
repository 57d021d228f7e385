//! The grammar and the merge, case by case.

use super::*;

fn p(s: &str) -> MountOptions {
    MountOptions::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// (input, the list as the tool receives it)
const GRAMMAR: &[(&str, &str)] = &[
    // empty strings and separators
    ("", ""),
    (",", ""),
    (",,,", ""),
    ("a,", "a"),
    (",a", "a"),
    ("a,,b,", "a,b"),
    ("a,,,,b", "a,b"),
    // flags and key=value
    ("a=1,b", "a=1,b"),
    ("k=", "k="),
    ("k=,j", "k=,j"),
    // '=' inside values: split at the first one only
    ("k=a=b=c", "k=a=b=c"),
    ("k==", "k=="),
    ("opts=x=1", "opts=x=1"),
    // whitespace and non-ASCII inside values are kept as they are
    ("ssh_command=ssh -p 22", "ssh_command=ssh -p 22"),
    ("k= lead,j=trail ", "k= lead,j=trail "),
    ("k=é ü", "k=é ü"),
    ("k=日本語,ключ=значение", "k=日本語,ключ=значение"),
    ("k=a\u{a0}b", "k=a\u{a0}b"),
    ("k=\"quoted\"", "k=\"quoted\""),
    ("k='x y'", "k='x y'"),
    ("k=;$(rm -rf /)", "k=;$(rm -rf /)"),
    // duplicate keys: first position, last value
    ("a=1,b,a=2", "a=2,b"),
    ("a=1,a=2,a=3", "a=3"),
    ("a,a", "a"),
    // a flag replacing key=value and the reverse
    ("a=1,a", "a"),
    ("a,a=1", "a=1"),
    ("a=1,b,a", "a,b"),
    // keys are case-sensitive (FUSE options are)
    ("Port=1,port=2", "Port=1,port=2"),
    // '-' is kept by the parser: the merge gives it its meaning
    ("a=-", "a=-"),
    ("a=-,a=1", "a=1"),
    ("a=1,a=-", "a=-"),
    ("a=--", "a=--"),
];

#[test]
fn grammar() {
    for (input, want) in GRAMMAR {
        assert_eq!(p(input).to_string(), *want, "{input:?}");
        assert_eq!(p(&p(input).to_string()), p(input), "round trip {input:?}");
    }
}

/// (input, exact message)
const ERRORS: &[(&str, &str)] = &[
    ("=x", "item 1 \"=x\": the key before '=' is empty"),
    ("a,=x", "item 2 \"=x\": the key before '=' is empty"),
    ("a,,=", "item 3 \"=\": the key before '=' is empty"),
    (
        "a, b",
        "item 2 \" b\": a key may not contain whitespace (a space after ',' is part of the next key)",
    ),
    (
        "a,b c=1",
        "item 2 \"b c=1\": a key may not contain whitespace (a space after ',' is part of the next key)",
    ),
    (
        "a=x\ny",
        "item 1 \"a=x\\ny\": control characters (newline, tab, NUL, ...) are not allowed",
    ),
    (
        "a=x\0",
        "item 1 \"a=x\\0\": control characters (newline, tab, NUL, ...) are not allowed",
    ),
    (
        "a,b=\t",
        "item 2 \"b=\\t\": control characters (newline, tab, NUL, ...) are not allowed",
    ),
    (
        "a\n",
        "item 1 \"a\\n\": control characters (newline, tab, NUL, ...) are not allowed",
    ),
    // the item is quoted, a secret's value never
    (
        "port=1,password=hunter2\n",
        "item 2 \"password=***\": control characters (newline, tab, NUL, ...) are not allowed",
    ),
];

#[test]
fn errors_quote_the_item_and_its_position() {
    for (input, want) in ERRORS {
        let err = MountOptions::parse(input).unwrap_err();
        assert_eq!(err.to_string(), *want, "{input:?}");
        let err = MountOptions::parse_defaults(input).unwrap_err();
        assert_eq!(err.to_string(), *want, "defaults {input:?}");
    }
}

#[test]
fn defaults_refuse_unset() {
    let err = MountOptions::parse_defaults("reconnect,cache=-").unwrap_err();
    assert_eq!(
        err.to_string(),
        "item 2 \"cache=-\": '-' only means something in a volume's o, where it removes \
         a plugin default; to have no default, leave the key out"
    );
    // refused even if a later duplicate would replace it
    assert!(MountOptions::parse_defaults("a=-,a=1").is_err());
    assert_eq!(
        MountOptions::parse_defaults("a=--,b=x-")
            .unwrap()
            .to_string(),
        "a=--,b=x-"
    );
}

/// (volume o, merged with PLUGIN)
const MERGE: &[(&str, &str)] = &[
    ("", "allow_other,reconnect,ServerAliveInterval=15,cache=yes"),
    (
        ",,",
        "allow_other,reconnect,ServerAliveInterval=15,cache=yes",
    ),
    // override in place
    (
        "ServerAliveInterval=5",
        "allow_other,reconnect,ServerAliveInterval=5,cache=yes",
    ),
    // '-' removes a plugin default, and on an absent key does nothing
    (
        "reconnect=-",
        "allow_other,ServerAliveInterval=15,cache=yes",
    ),
    (
        "absent=-",
        "allow_other,reconnect,ServerAliveInterval=15,cache=yes",
    ),
    ("allow_other=-,cache=-", "reconnect,ServerAliveInterval=15"),
    // new keys are appended in the volume's order
    (
        "port=2222,idmap=user",
        "allow_other,reconnect,ServerAliveInterval=15,cache=yes,port=2222,idmap=user",
    ),
    // a flag replacing key=value and the reverse
    (
        "cache",
        "allow_other,reconnect,ServerAliveInterval=15,cache",
    ),
    (
        "reconnect=1",
        "allow_other,reconnect=1,ServerAliveInterval=15,cache=yes",
    ),
    // last duplicate within the volume's list wins
    (
        "reconnect=-,reconnect",
        "allow_other,reconnect,ServerAliveInterval=15,cache=yes",
    ),
    (
        "reconnect,reconnect=-",
        "allow_other,ServerAliveInterval=15,cache=yes",
    ),
    (
        "cache=no,cache=maybe",
        "allow_other,reconnect,ServerAliveInterval=15,cache=maybe",
    ),
    // an unset key set again by the volume comes back at the end
    (
        "cache=-,new=1",
        "allow_other,reconnect,ServerAliveInterval=15,new=1",
    ),
    // case matters: this is a new key
    (
        "serveraliveinterval=1",
        "allow_other,reconnect,ServerAliveInterval=15,cache=yes,serveraliveinterval=1",
    ),
    // values with '=', whitespace and non-ASCII pass through; ',' always separates
    (
        "ssh_command=ssh -o A=b,x=é",
        "allow_other,reconnect,ServerAliveInterval=15,cache=yes,ssh_command=ssh -o A=b,x=é",
    ),
];

const PLUGIN: &str = "allow_other,reconnect,ServerAliveInterval=15,cache=yes";

#[test]
fn merge_rules() {
    let plugin = MountOptions::parse_defaults(PLUGIN).unwrap();
    for (volume, want) in MERGE {
        assert_eq!(
            plugin.merge(&p(volume)).to_string(),
            *want,
            "volume {volume:?}"
        );
        assert_eq!(plugin.to_string(), PLUGIN, "defaults changed by {volume:?}");
    }
    // from empty defaults, unsets vanish and the rest is the volume's list
    assert_eq!(
        MountOptions::default().merge(&p("a=-,b,c=1")).to_string(),
        "b,c=1"
    );
}

#[test]
fn redaction_hides_secret_values_only() {
    assert_eq!(
        p("port=22,password=x,pass=y,Token=z,secret").redacted(),
        "port=22,password=***,pass=***,Token=***,secret"
    );
}
