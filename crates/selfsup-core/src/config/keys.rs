//! Dotted config keys: listing a TOML tree's leaves, reading and writing one, and the closest
//! known key to a typo.

/// Every leaf key of `v` (`train.epochs`, `method.name`, …), tables descended, arrays kept whole.
pub fn leaves(v: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, child) in v {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match child {
            toml::Value::Table(t) => leaves(t, &key, out),
            _ => out.push(key),
        }
    }
}

/// The value at dotted `key`.
pub fn get<'a>(root: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let (parent, name) = split(key);
    let table = parent
        .split('.')
        .filter(|p| !p.is_empty())
        .try_fold(root, |t, p| t.get(p)?.as_table())?;
    table.get(name)
}

/// Sets dotted `key` to `value`, creating tables on the way; false when a parent on the way
/// is not a table.
pub fn set(root: &mut toml::Table, key: &str, value: toml::Value) -> bool {
    let (parent, name) = split(key);
    let mut table = root;
    for part in parent.split('.').filter(|p| !p.is_empty()) {
        let entry = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(t) => table = t,
            _ => return false,
        }
    }
    table.insert(name.to_string(), value);
    true
}

/// Removes dotted `key`, returning its value; tables left empty stay.
pub fn remove(root: &mut toml::Table, key: &str) -> Option<toml::Value> {
    let (parent, name) = split(key);
    let mut table = root;
    for part in parent.split('.').filter(|p| !p.is_empty()) {
        table = table.get_mut(part)?.as_table_mut()?;
    }
    table.remove(name)
}

fn split(key: &str) -> (&str, &str) {
    key.rsplit_once('.').unwrap_or(("", key))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate closest to `key` by edit distance ("" when there are none).
pub fn closest<'a>(key: &str, candidates: &'a [String]) -> &'a str {
    candidates
        .iter()
        .min_by_key(|c| edit_distance(key, c))
        .map(String::as_str)
        .unwrap_or("")
}

/// A `--set` value as a TOML literal (number, bool, array, quoted string), else as a bare
/// string, so `--set model.stem=imagenet` works without quotes.
pub fn parse_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").expect("parsed key"),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_keys_round_trip() {
        let mut t: toml::Table = toml::from_str("[a]\nb = 1\n[a.c]\nd = [1, 2]\n").unwrap();
        let mut keys = Vec::new();
        leaves(&t, "", &mut keys);
        keys.sort();
        assert_eq!(keys, ["a.b", "a.c.d"]);
        assert_eq!(get(&t, "a.b"), Some(&toml::Value::Integer(1)));
        assert!(set(&mut t, "x.y", toml::Value::Boolean(true)));
        assert!(!set(&mut t, "a.b.z", toml::Value::Boolean(true)));
        assert_eq!(remove(&mut t, "x.y"), Some(toml::Value::Boolean(true)));
        assert_eq!(get(&t, "x.y"), None);
        assert_eq!(
            closest(
                "train.batchsize",
                &["train.batch_size".into(), "train.epochs".into()]
            ),
            "train.batch_size"
        );
        assert_eq!(
            parse_value("imagenet"),
            toml::Value::String("imagenet".into())
        );
        assert_eq!(parse_value("[64, 32]").as_array().unwrap().len(), 2);
    }
}
