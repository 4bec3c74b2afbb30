//! Container names and ids: generated as Docker does, checked as Docker does.

/// Adjectives and nouns for generated names, `adjective_noun` as Docker's.
/// The nouns are burrowing animals.
const ADJECTIVES: &[&str] = &[
    "agile", "amazing", "bold", "brave", "bright", "busy", "calm", "clever", "cosy", "curious",
    "daring", "eager", "earnest", "elegant", "fervent", "fond", "gallant", "gentle", "happy",
    "hardy", "humble", "jolly", "keen", "kind", "lucid", "merry", "mighty", "modest", "nimble",
    "noble", "patient", "peaceful", "plucky", "proud", "quiet", "quirky", "relaxed", "sharp",
    "shy", "silly", "sleepy", "smart", "snug", "steady", "stoic", "sturdy", "sunny", "swift",
    "tender", "tidy", "trusty", "upbeat", "vibrant", "vigilant", "warm", "wise", "witty",
    "zealous",
];
const NOUNS: &[&str] = &[
    "aardvark",
    "armadillo",
    "badger",
    "bilby",
    "chipmunk",
    "coney",
    "dormouse",
    "echidna",
    "ferret",
    "gerbil",
    "gopher",
    "groundhog",
    "hamster",
    "hare",
    "hedgehog",
    "jerboa",
    "marmot",
    "meerkat",
    "mole",
    "mongoose",
    "numbat",
    "otter",
    "pangolin",
    "pika",
    "platypus",
    "prairiedog",
    "puffin",
    "rabbit",
    "shrew",
    "skunk",
    "squirrel",
    "stoat",
    "tortoise",
    "vole",
    "weasel",
    "wombat",
    "woodchuck",
];

/// Random bytes from the kernel; burrow cannot run without them.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the kernel's random number generator is unavailable");
    b
}

/// A new 64-hex container id.
pub fn new_id() -> String {
    hex::encode(random_bytes::<32>())
}

/// A random `adjective_noun`; `taken` says whether a candidate is in use.
/// After a few collisions a digit is appended, as Docker does.
pub fn generate(taken: impl Fn(&str) -> bool) -> String {
    for attempt in 0.. {
        let r = random_bytes::<4>();
        let adj = ADJECTIVES[usize::from(r[0]) % ADJECTIVES.len()];
        let noun = NOUNS[usize::from(r[1]) % NOUNS.len()];
        let name = if attempt < 8 {
            format!("{adj}_{noun}")
        } else {
            format!("{adj}_{noun}{}", r[2] % 100)
        };
        if !taken(&name) {
            return name;
        }
    }
    unreachable!("the loop only ends by returning")
}

/// Checks a user-given name against Docker's rule `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if first_ok && rest_ok && name.len() >= 2 && name.len() <= 128 {
        Ok(())
    } else {
        Err(format!(
            "invalid container name \"{name}\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at least 2 characters"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex() {
        let id = new_id();
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, new_id());
    }

    #[test]
    fn generated_names_are_adjective_noun_and_avoid_taken() {
        let name = generate(|_| false);
        let (adj, noun) = name.split_once('_').unwrap();
        assert!(ADJECTIVES.contains(&adj) && NOUNS.contains(&noun));
        // Everything plain is taken: a numbered name comes out.
        let numbered = generate(|n| !n.chars().last().unwrap().is_ascii_digit());
        assert!(numbered.chars().last().unwrap().is_ascii_digit());
    }

    #[test]
    fn validation() {
        assert!(validate("web").is_ok());
        assert!(validate("my-app_1.2").is_ok());
        assert!(validate("-bad").is_err());
        assert!(validate("a").is_err());
        assert!(validate("has space").is_err());
        assert!(validate("slash/no").is_err());
    }
}
