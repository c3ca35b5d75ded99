//! Language detection with `whatlang` (maintained, pure Rust, 69 languages incl. Hungarian and
//! Hebrew), reported as ISO 639-1 codes where one exists.

/// The detected language of `text` as an ISO 639-1 code (ISO 639-3 where no two-letter code
/// exists), or "und" when the text gives too little to go on.
pub fn detect(text: &str) -> &'static str {
    match whatlang::detect_lang(text) {
        Some(lang) => iso_639_1(lang),
        None => "und",
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
        Epo => "eo", Eng => "en", Rus => "ru", Cmn => "zh", Spa => "es", Por => "pt", Ita => "it",
        Ben => "bn", Fra => "fr", Deu => "de", Ukr => "uk", Kat => "ka", Ara => "ar", Hin => "hi",
        Jpn => "ja", Heb => "he", Yid => "yi", Pol => "pl", Amh => "am", Jav => "jv", Kor => "ko",
        Nob => "nb", Dan => "da", Swe => "sv", Fin => "fi", Tur => "tr", Nld => "nl", Hun => "hu",
        Ces => "cs", Ell => "el", Bul => "bg", Bel => "be", Mar => "mr", Kan => "kn", Ron => "ro",
        Slv => "sl", Hrv => "hr", Srp => "sr", Mkd => "mk", Lit => "lt", Lav => "lv", Est => "et",
        Tam => "ta", Vie => "vi", Urd => "ur", Tha => "th", Guj => "gu", Uzb => "uz", Pan => "pa",
        Aze => "az", Ind => "id", Tel => "te", Pes => "fa", Mal => "ml", Ori => "or", Mya => "my",
        Nep => "ne", Sin => "si", Khm => "km", Tuk => "tk", Aka => "ak", Zul => "zu", Sna => "sn",
        Afr => "af", Lat => "la", Slk => "sk", Cat => "ca", Tgl => "tl", Hye => "hy",
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
    }
}
