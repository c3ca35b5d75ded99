//! calmline's own Unigram segmentation (src/model/tokenizer.rs) against the `tokenizers`
//! crate's, on the same tokenizer.json: the same ids for thousands of lines of the public data
//! sets beside the project (about 20 languages in Latin, Hebrew, Arabic, Cyrillic, Hangul,
//! Han and more scripts) and for hand-picked edge cases.

use std::path::{Path, PathBuf};

use calmline::model::tokenizer::{PREFIX, TextTokenizer};

const SPECIALS: [&str; 5] = ["<s>", "</s>", "<pad>", "<unk>", "<mask>"];

fn text_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            text_files(&path, found);
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("txt" | "csv" | "tsv" | "jsonl" | "json")) {
            found.push(path);
        }
    }
}

/// Up to `per_file` lines from each text file of ../shared/data, spread over the file.
fn data_lines(per_file: usize) -> Vec<String> {
    let mut files = Vec::new();
    text_files(Path::new("../shared/data"), &mut files);
    assert!(files.len() >= 10, "../shared/data beside the project has the data sets");
    let mut lines = Vec::new();
    for file in files {
        let Ok(bytes) = std::fs::read(&file) else { continue };
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4 << 20)]).into_owned();
        let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let step = (all.len() / per_file).max(1);
        lines.extend(all.iter().step_by(step).take(per_file).map(|l| l.chars().take(600).collect::<String>()));
    }
    lines
}

#[test]
fn our_unigram_gives_the_crates_ids() {
    let path = Path::new("models/base/tokenizer.json");
    let ours = TextTokenizer::load(path, 512).expect("run `make setup` first");
    let theirs = tokenizers::Tokenizer::from_file(path).unwrap();
    let mut texts = data_lines(150);
    let data_count = texts.len();
    texts.extend(
        [
            "",
            " ",
            "   leading and trailing   ",
            "tabs\tand\nnew lines",
            "ALL CAPS AND lower",
            "emoji 😡🤬👍🏽 and 🇭🇺 flags",
            "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
            "combining: e\u{301} vs é, Å vs A\u{30a}",
            "zero\u{200b}width and soft\u{ad}hyphen",
            "private use \u{e000}\u{f8ff} and \u{10fffd}",
            "rare scripts: ᚠᚢᚦ 𓀀 ꯀꯁ",
            "control \u{7}\u{1b}[0m chars",
            "מה קורה? תעביר אותי למנהל!!! 123",
            "Ez teljesen elfogadhatatlan, már harmadszor hívom önöket!",
            "你们的服务太差了，我已经等了三天",
            "هذا غير مقبول على الإطلاق",
            "Это просто безобразие",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ]
        .map(String::from),
    );
    let (mut compared, mut different) = (0, Vec::new());
    for text in &texts {
        if SPECIALS.iter().any(|s| text.contains(s)) {
            continue; // the crate reads these as control tokens; calmline reads them as text
        }
        compared += 1;
        let expected = theirs.encode(format!("{PREFIX}{text}"), true).unwrap().get_ids().to_vec();
        if ours.encode(text).unwrap() != expected {
            different.push(text.clone());
        }
    }
    assert!(data_count > 2000, "only {data_count} lines from the data sets");
    println!("{compared} texts compared ({data_count} from the data sets), {} different", different.len());
    assert!(different.is_empty(), "{} of {compared} texts segment differently, e.g. {:?}", different.len(), &different[..different.len().min(5)]);
}

#[test]
fn special_token_strings_in_a_text_are_text() {
    let ours = TextTokenizer::load(Path::new("models/base/tokenizer.json"), 512).unwrap();
    let ids = ours.encode("hello <s> </s> <mask>").unwrap();
    let (bos, eos) = (ids[0], ids[ids.len() - 1]);
    let inner = &ids[1..ids.len() - 1];
    assert!(!inner.contains(&bos) && !inner.contains(&eos) && inner.len() > 8, "{ids:?}");
}

/// The byte range of each token (`encode_with_offsets`) is the crate's on the same lines (whose
/// normaliser changes many of them: full-width punctuation, a BOM, combining marks), but for the
/// space before a word, which calmline leaves out.
#[test]
fn token_offsets_are_the_crates() {
    let path = Path::new("models/base/tokenizer.json");
    let ours = TextTokenizer::load(path, 512).unwrap();
    let theirs = tokenizers::Tokenizer::from_file(path).unwrap();
    let mut texts = data_lines(40);
    texts.extend(
        ["You are a complete idiot!", "  spaced   out  ", "מה קורה? תעביר אותי למנהל", "你们的服务太差了，真的", "ｆｕｌｌ e\u{301}gal 😡 ok"]
            .map(String::from),
    );
    let (mut tokens, mut different) = (0usize, Vec::new());
    for text in texts.iter().filter(|t| !SPECIALS.iter().any(|s| t.contains(s))) {
        let (ids, offsets) = ours.encode_with_offsets(text).unwrap();
        assert_eq!(ids, ours.encode(text).unwrap(), "the same ids as `encode` for {text:?}");
        let full = format!("{PREFIX}{text}");
        let expected = theirs.encode(full.as_str(), true).unwrap();
        for (ours, &(from, to)) in offsets.iter().zip(expected.get_offsets()).skip(1) {
            let from = from + full[from..to].len() - full[from..to].trim_start().len();
            let theirs = (from >= PREFIX.len() && to > from).then(|| (from - PREFIX.len(), to - PREFIX.len()));
            tokens += 1;
            if *ours != theirs && theirs.is_some() {
                different.push((text.clone(), *ours, theirs));
            }
        }
    }
    println!("{tokens} tokens compared");
    assert!(tokens > 10_000, "only {tokens} tokens");
    assert!(different.is_empty(), "{} of {tokens} tokens differ, e.g. {:?}", different.len(), &different[..different.len().min(3)]);
}
