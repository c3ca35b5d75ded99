//! Language detection with `whatlang` (maintained, pure Rust, 69 languages incl. Hungarian and
//! Hebrew), reported as ISO 639-1 codes where one exists.

/// Below this confidence a Latin- or Cyrillic-script guess is more often wrong than right on
/// the short turns of a chat ("You are an idiot." reads as Romanian): say "und" instead.
const MIN_CONFIDENCE: f64 = 0.5;

/// The detected language of `text` as an ISO 639-1 code (ISO 639-3 where no two-letter code
/// exists), or "und" when the text gives too little to go on. A wrong language is worse than
/// none: callers who know it send it as a hint.
pub fn detect(text: &str) -> &'static str {
    let Some(info) = whatlang::detect(text) else { return "und" };
    if info.confidence() >= MIN_CONFIDENCE {
        return iso_639_1(info.lang());
    }
    // Scripts that (almost) only one language of the detector uses identify it even in a word.
    use whatlang::Script::*;
    match info.script() {
        Hebrew => "he",
        Greek => "el",
        Hangul => "ko",
        Georgian => "ka",
        Armenian => "hy",
        Thai => "th",
        Hiragana | Katakana => "ja",
        _ => "und",
    }
}

/// Every code `detect` can return: a closed set, safe as a metric label.
pub static KNOWN_CODES: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    let mut codes: Vec<&'static str> = whatlang::Lang::all().iter().map(|&l| iso_639_1(l)).collect();
    codes.push("und");
    codes
});

fn iso_639_1(lang: whatlang::Lang) -> &'static str {
    use whatlang::Lang::*;
    match lang {
        Epo => "eo",
        Eng => "en",
        Rus => "ru",
        Cmn => "zh",
        Spa => "es",
        Por => "pt",
        Ita => "it",
        Ben => "bn",
        Fra => "fr",
        Deu => "de",
        Ukr => "uk",
        Kat => "ka",
        Ara => "ar",
        Hin => "hi",
        Jpn => "ja",
        Heb => "he",
        Yid => "yi",
        Pol => "pl",
        Amh => "am",
        Jav => "jv",
        Kor => "ko",
        Nob => "nb",
        Dan => "da",
        Swe => "sv",
        Fin => "fi",
        Tur => "tr",
        Nld => "nl",
        Hun => "hu",
        Ces => "cs",
        Ell => "el",
        Bul => "bg",
        Bel => "be",
        Mar => "mr",
        Kan => "kn",
        Ron => "ro",
        Slv => "sl",
        Hrv => "hr",
        Srp => "sr",
        Mkd => "mk",
        Lit => "lt",
        Lav => "lv",
        Est => "et",
        Tam => "ta",
        Vie => "vi",
        Urd => "ur",
        Tha => "th",
        Guj => "gu",
        Uzb => "uz",
        Pan => "pa",
        Aze => "az",
        Ind => "id",
        Tel => "te",
        Pes => "fa",
        Mal => "ml",
        Ori => "or",
        Mya => "my",
        Nep => "ne",
        Sin => "si",
        Khm => "km",
        Tuk => "tk",
        Aka => "ak",
        Zul => "zu",
        Sna => "sn",
        Afr => "af",
        Lat => "la",
        Slk => "sk",
        Cat => "ca",
        Tgl => "tl",
        Hye => "hy",
        other => other.code(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn detects_the_languages_calmline_is_written_for() {
        assert_eq!(super::detect("Ez teljesen elfogadhatatlan, már harmadszor hívom önöket!"), "hu");
        assert_eq!(super::detect("תודה רבה על העזרה, יום טוב"), "he");
        assert_eq!(super::detect("The router has dropped the connection five times today."), "en");
        assert_eq!(super::detect("Ich warte seit zwei Wochen auf eine Antwort."), "de");
        assert_eq!(super::detect("1234 !!!"), "und");
        // Too short to tell Latin-script languages apart: unknown, not a wrong guess.
        assert_eq!(super::detect("You are an idiot."), "und");
        assert_eq!(super::detect("אתה אידיוט"), "he");
    }
}
