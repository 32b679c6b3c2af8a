"""How a refusal reads in German, French, Spanish, Portuguese, Italian, Dutch, Russian and Polish.

The first-class languages (`core.language_id.FIRST_CLASS`) besides English and
Chinese, which `refusals.py` spells inline. Two rules per language, the two whose English
counterparts are the most precise:

- `refusal.language_model`: the model naming itself ("Als KI-Sprachmodell habe ich keine
  Meinung", "Je suis un modèle de langage"). "As a language model" is also how a text
  describes a third party ("GPT-3 dient als Sprachmodell ..."), so the "as" form must open a
  clause (the answer's start, after punctuation or a conjunction: "Lo siento, pero como modelo
  de lenguaje ...") and its sentence must speak in the first person singular. "I am (just) a
  language model" is first person by itself.
- `refusal.decline` (its opening part): the answer opens with an apology or "unfortunately"
  and a first-person inability, or with the inability itself, AND the inability's own clause
  names what a model declines: helping, answering, providing, accessing, generating,
  predicting, the request, or a picture, a file, a link, the internet, real time, a personal
  opinion. Without that condition a story's "Je ne peux pas m'empêcher de sourire", a letter's
  "Lo siento, pero no puedo asistir a tu boda" or "Leider kann ich mich nicht erinnern" would
  go. Verbs that are as often a story's (open, watch, visit, sail, express, attend, fulfil a
  wish, execute) are left out: a refusal with them usually names its object (a link, a
  video, the request) anyway. An answer
  opening with a quote or a dash is dialogue, not the model's voice.

The role-play exemptions of the English rules (a persona's in-story decline) read English;
`refusals.py` applies these declines only when the instruction asks for no role (the role
signals, in every language, are in `context.py`). The language-model rule runs in role-play
too: a persona never calls itself a language model.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator


@dataclasses.dataclass(frozen=True)
class Phrases:
    """One language's refusal phrasing (regex fragments, matched case-insensitively)."""

    as_model: str  # "als (ein) KI-Sprachmodell": needs a clause start and a first person
    lead: str  # words after which an "as" phrase still opens a clause ("aber", "jedoch", "habe ich")
    am_model: str  # "ich bin (nur) ein Sprachmodell": first person by itself
    first_person: str  # a first-person-singular word of the same sentence
    apology: str  # an opening apology or "unfortunately"
    but: str  # the conjunction between apology and inability ("aber")
    unable: str  # first-person inability, subject first ("ich kann ... nicht", "je ne peux pas")
    task: str  # what a model declines: a verb of the task or a thing it cannot reach
    inverted: str = ""  # verb-second languages after an opening word: "Leider kann ich ... nicht"


# German and Dutch put the negation after the object ("ich kann diese Frage nicht beantworten"):
# their inability holds a look-ahead for the negation in the same clause.
_DE_NOT = r"(?=[^.!?\n,;:]*?\b(?:nicht|kein\w*)\b)"
_NL_NOT = r"(?=[^.!?\n,;:]*?\b(?:niet|geen)\b)"

PHRASES: dict[str, Phrases] = {
    "de": Phrases(
        as_model=(r"als\s+(?:ein(?:e[ms]?)?\s+)?(?:von\s+[\w-]+\s+)?(?:[\w-]+e[snmr]?\s+){0,2}?"
                  r"(?:(?:KI|AI)[- ]?(?:Sprach)?modell|Sprachmodell)"),
        lead=r"aber|doch|jedoch|und|da|weil|ich|habe|kann|bin|darf",
        am_model=r"ich\s+bin\s+(?:(?:nur|lediglich|bloß|einfach|halt)\s+)?ein(?:e)?\s+(?:(?:KI|AI)[- ]?)?(?:Sprach)?modell",
        first_person=r"ich|mir|mich|mein\w*",
        apology=(r"(?:es\s+)?tut\s+mir\s+(?:sehr\s+|wirklich\s+)?leid|entschuldig\w*|verzeihung|leider|bedauerlicherweise"
                 r"|ich\s+bedaure|sorry"),
        but=r"aber|doch|jedoch",
        unable=(rf"ich\s+(?:kann|darf){_DE_NOT}|ich\s+bin\s+nicht\s+in\s+der\s+lage|ich\s+habe\s+kein\w*"
                r"|es\s+ist\s+mir\s+(?:nicht\s+möglich|unmöglich)"),
        inverted=(rf"(?:kann|darf)\s+ich{_DE_NOT}|bin\s+ich\s+nicht\s+in\s+der\s+lage|habe\s+ich\s+kein\w*"
                  r"|ist\s+es\s+mir\s+(?:nicht\s+möglich|unmöglich)"),
        task=(r"(?<!mir nicht )helfen|behilflich|beantworten|antworten|bereitstellen|zugreifen|zugriff|zugang|aufrufen"
              r"|abrufen|generieren|anfrage\w*|bild(?:er|ern)?|fotos?|videos?|dateien?|anh(?:ang|änge)|link|urls?"
              r"|webseiten?|websites?|internet\w*|echtzeit\w*|persönliche\w*\s+(?:meinung\w*|vorlieben|gefühle)"),
    ),
    "fr": Phrases(
        as_model=(r"en\s+tant\s+qu(?:e\s+|['’])|comme\s+"),
        lead=r"mais|cependant|toutefois|et|car|je|j['’]ai",
        am_model=(r"je\s+(?:suis|ne\s+suis\s+qu['’])\s*(?:(?:juste|seulement|simplement|uniquement)\s+)?"),
        first_person=r"je|j['’]|me|m['’]|moi|mon|ma|mes",
        apology=(r"(?:je\s+suis\s+|nous\s+sommes\s+)?(?:vraiment\s+|sincèrement\s+|profondément\s+)?(?:désolée?s?|navrée?s?)"
                 r"|je\s+m['’]excuse|(?:toutes\s+)?mes\s+excuses|pardon|malheureusement|hélas|je\s+regrette"),
        but=r"mais|cependant",
        unable=(r"je\s+ne\s+(?:peux|pourrai|pourrais|suis\s+pas\s+(?:en\s+mesure|capable|autorisée?))\b"
                r"|je\s+n['’](?:ai|aurai)\s+pas|je\s+suis\s+(?:incapable|dans\s+l['’]impossibilité)"
                r"|il\s+m['’]est\s+(?:impossible|pas\s+possible)"),
        task=(r"aider|répondre|fournir|accéder|accès|générer|prédire|demande|requête|images?|photos?|vidéos?"
              r"|fichiers?|liens?|pièces?\s+jointes?|internet|sites?\s+web|pages?\s+web|url|temps\s+réel"
              r"|opinions?\s+personnelles?|avis\s+personnel"),
    ),
    "es": Phrases(
        as_model=r"como\s+|siendo\s+",
        lead=r"pero|sin\s+embargo|y|ya\s+que|porque|yo",
        am_model=r"(?:yo\s+)?soy\s+(?:(?:solo|sólo|solamente|simplemente|únicamente)\s+)?",
        first_person=(r"yo|me|mi|mí|mis|conmigo|tengo|puedo|soy|estoy|sé|debo|poseo|dispongo|cuento|experimento"
                      r"|siento|podría|puedo"),
        apology=(r"(?:lo\s+)?(?:siento|lamento)\s+mucho|lo\s+(?:siento|lamento)|mis\s+disculpas|disculp\w+|perdón"
                 r"|perdona\w*|lamentablemente|desafortunadamente|por\s+desgracia|me\s+temo\s+que"),
        but=r"pero|sin\s+embargo",
        unable=(r"(?:yo\s+)?no\s+(?:puedo|podré|podría|soy\s+capaz\s+de|estoy\s+en\s+(?:condiciones|capacidad|posición)\s+de"
                r"|tengo\s+(?:acceso|la\s+capacidad|la\s+posibilidad|forma|manera))\b|me\s+es\s+imposible|no\s+me\s+es\s+posible"),
        task=(r"ayud\w+|respond\w+|contestar|proporcionar\w*|brindar\w*|acceder|acceso|generar|predecir|solicitud"
              r"|petición|imágenes|imagen|fotos?|fotografías?|v[íi]deos?|archivos?|enlaces?|adjuntos?|internet"
              r"|sitios?\s+web|páginas?\s+web|url|tiempo\s+real|opini(?:ón|ones)\s+personal(?:es)?"),
    ),
    "pt": Phrases(
        as_model=r"como\s+|sendo\s+",
        lead=r"mas|porém|no\s+entanto|e|já\s+que|porque|eu",
        am_model=r"(?:eu\s+)?sou\s+(?:(?:apenas|só|somente|simplesmente)\s+)?",
        first_person=(r"eu|me|mim|meu|minha|meus|minhas|tenho|posso|sou|estou|sei|devo|possuo|consigo|sinto|poderia"),
        apology=(r"desculp\w+|(?:sinto|lamento)\s+muito|lamento|peço\s+desculpas?|infelizmente|lamentavelmente|perdão"),
        but=r"mas|porém|no\s+entanto",
        unable=(r"(?:eu\s+)?não\s+(?:posso|poderei|poderia|consigo|sou\s+capaz\s+de|estou\s+em\s+condições\s+de"
                r"|tenho\s+(?:acesso|a\s+capacidade|como|a\s+possibilidade))\b|não\s+me\s+é\s+possível|é-me\s+impossível"),
        task=(r"ajud\w+|auxiliar|respond\w+|fornecer|prover|acessar|aceder|acesso|gerar|prever|solicitação|pedido"
              r"|imagens?|fotos?|fotografias?|vídeos?|arquivos?|ficheiros?|links?|anexos?|internet|sites?"
              r"|páginas?\s+(?:da\s+)?web|url|tempo\s+real|opini(?:ão|ões)\s+pesso\w+"),
    ),
    "it": Phrases(
        as_model=r"come\s+|in\s+quanto\s+|essendo\s+",
        lead=r"ma|però|tuttavia|e|poiché|perché|io",
        am_model=r"(?:io\s+)?sono\s+(?:(?:solo|soltanto|semplicemente|solamente)\s+)?",
        first_person=r"io|mi|me|mio|mia|miei|mie|ho|posso|sono|so|devo|dispongo|possiedo|provo|riesco|potrei",
        apology=(r"mi\s+(?:dispiace|scuso)(?:\s+molto)?|spiacente|scusa(?:mi|te)?|chiedo\s+scusa|le\s+mie\s+scuse"
                 r"|purtroppo|sfortunatamente"),
        but=r"ma|però|tuttavia",
        unable=(r"(?:io\s+)?non\s+(?:posso|potrò|potrei|sono\s+in\s+grado\s+di|riesco\s+a"
                r"|ho\s+(?:accesso|la\s+capacità|la\s+possibilità|modo))\b|mi\s+è\s+impossibile|non\s+mi\s+è\s+possibile"),
        task=(r"aiut\w+|rispond\w+|fornire|accedere|accesso|generare|prevedere|richiesta|immagin[ei]"
              r"|foto(?:grafi[ae])?|video|file|link|allegat[oi]|internet|siti\s+web|pagine\s+web|url|tempo\s+reale"
              r"|opinion[ei]\s+personal[ei]"),
    ),
    "nl": Phrases(
        as_model=(r"als\s+(?:een\s+)?(?:(?:groot|grote)\s+)?"),
        lead=r"maar|echter|en|omdat|ik|heb|kan|ben",
        am_model=r"ik\s+ben\s+(?:(?:maar|slechts|gewoon|alleen|enkel)\s+)?een\s+",
        first_person=r"ik|mij|me|mijn",
        apology=(r"het\s+spijt\s+me(?:\s+(?:zeer|echt))?|sorry|(?:mijn\s+)?excuses|excuseer|helaas|jammer\s+genoeg"
                 r"|spijtig\s+genoeg"),
        but=r"maar|echter",
        unable=(rf"ik\s+(?:kan|mag){_NL_NOT}|ik\s+ben\s+niet\s+in\s+staat|ik\s+heb\s+geen"
                r"|het\s+is\s+(?:mij|me)\s+niet\s+mogelijk"),
        inverted=(rf"(?:kan|mag)\s+ik{_NL_NOT}|ben\s+ik\s+niet\s+in\s+staat|heb\s+ik\s+geen"
                  r"|is\s+het\s+(?:mij|me)\s+niet\s+mogelijk"),
        task=(r"(?<!het niet )helpen|behulpzaam|beantwoorden|antwoorden|verstrekken|toegang|browsen|genereren"
              r"|voorspellen|verzoek|afbeelding\w*|foto'?s?|video'?s?|bestand\w*|link|bijlage\w*|internet|website\w*"
              r"|webpagina\w*|url|realtime|real-time|persoonlijke\s+(?:mening\w*|voorkeur\w*)"),
    ),
    "ru": Phrases(
        as_model=r"как\s+|будучи\s+",
        lead=r"но|однако|и|так\s+как|поскольку|я",
        am_model=(r"я\s*(?:[—–-]\s*|являюсь\s+)?(?:(?:всего\s+лишь|лишь|просто|только)\s+)?"),
        first_person=r"я|мне|меня|мной|мой|моя|моё|мои|моих|моего|могу|имею|обладаю|являюсь|умею|испытываю",
        apology=(r"извини(?:те)?|прости(?:те)?|прошу\s+прощения|мне\s+(?:очень\s+)?жаль|(?:я\s+)?сожалею"
                 r"|к\s+(?:большому\s+)?сожалению|увы"),
        but=r"но|однако",
        unable=(r"(?:я\s+)?не\s+(?:могу|смогу|в\s+состоянии|имею\s+возможности)\b|у\s+меня\s+нет\s+(?:доступа|возможности)"),
        task=(r"помо\w+|ответ\w*|предостав\w+|доступ\w*|сгенерир\w+|генерир\w+|запрос\w*|просьб\w+"
              r"|изображени\w+|картинк\w+|фото(?:графи\w+)?|видео\w*|файл\w*|ссылк\w+|интернет\w*|сайт\w*"
              r"|веб-\w+|вложени\w+|реальном\s+времени|личн\w+\s+мнени\w+"),
    ),
    "pl": Phrases(
        as_model=r"jako\s+|będąc\s+",
        lead=r"ale|jednak|i|ponieważ|bo|ja",
        am_model=r"(?:ja\s+)?jestem\s+(?:(?:tylko|jedynie|po\s+prostu|zaledwie)\s+)?",
        first_person=(r"ja|mnie|mi|mną|mój|moja|moje|moich|mojego|mam|mogę|jestem|posiadam|potrafię|umiem|odczuwam"
                      r"|czuję"),
        apology=(r"przepraszam|przykro\s+mi|niestety|wybacz(?:cie)?|proszę\s+wybaczyć|z\s+przykrością"),
        but=r"ale|jednak",
        unable=(r"(?:ja\s+)?nie\s+(?:mogę|jestem\s+w\s+stanie|potrafię|będę\s+w\s+stanie|mam\s+(?:dostępu|możliwości))\b"),
        task=(r"pomó\w*|pomag\w+|odpowied(?:zieć|zi\w*)|odpowiada\w*|udziel\w+|dostęp\w*|wygener\w+|generow\w+"
              r"|prośb\w+|zapytani\w+|obraz(?:ów|y|k\w*)|zdjęć|zdjęci\w*|wideo|plik\w*|link\w*|załącznik\w*"
              r"|internet\w*|stron\w*\s+internetow\w*|czasie\s+rzeczywistym|osobist\w+\s+(?:opini\w+|zdani\w+|preferencj\w+)"),
    ),
}

# What the model calls itself after the "as" or "I am" words: language model, AI model.
_MODEL_NOUN: dict[str, str] = {
    "de": "",  # in as_model / am_model: German compounds ("KI-Sprachmodell")
    "fr": (r"(?:une?\s+)?(?:(?:grand|simple)\s+)?(?:modèle\s+(?:de\s+(?:langage|langue)|linguistique"
           r"|d['’](?:IA|intelligence\s+artificielle))|IA\s+conversationnelle)(?:\s+d['’]IA)?"),
    "es": (r"(?:un\s+)?(?:gran\s+)?modelo\s+(?:de\s+lenguaje|lingüístico|de\s+(?:IA|inteligencia\s+artificial))(?:\s+de\s+IA)?"),
    "pt": (r"(?:um\s+)?(?:grande\s+)?modelo\s+(?:de\s+(?:linguagem|língua)|linguístico"
           r"|de\s+(?:IA|inteligência\s+artificial))(?:\s+de\s+IA)?"),
    "it": (r"(?:un\s+)?(?:grande\s+)?modello\s+(?:linguistico|di\s+(?:linguaggio|lingua|IA|intelligenza\s+artificiale))(?:\s+(?:di\s+IA|AI))?"),
    "nl": r"(?:(?:AI|KI)[- ]?)?taalmodel|(?:AI|KI)[- ]model",
    "ru": (r"(?:большая\s+)?(?:языков(?:ая|ой)\s+модел(?:ь|ью)|(?:ИИ|AI)[- ]модел(?:ь|ью)"
           r"|модел(?:ь|ью)\s+(?:ИИ|искусственного\s+интеллекта))"),
    "pl": (r"(?:duży\s+)?(?:model(?:em)?\s+(?:językow(?:y|ym)|(?:AI|SI|sztucznej\s+inteligencji))"
           r"|językow(?:y|ym)\s+model(?:em)?)"),
}

_FLAGS = re.IGNORECASE
_END = r"(?![\w-])"
# Not the model's voice: an answer opening with a quote or a dialogue dash.
_START = r"^(?![\s*#>_]*[\"'«»„“”‘’‹›—–-])[\s*#>_]*"
_SENTENCE = r"[^.!?\n]*"
# What is declined must be named in the inability's own clause: "Ich kann nicht glauben, dass das
# Video ..." declines nothing.
_CLAUSE = r"[^.!?\n,;:]*?"


def _as_model(code: str, p: Phrases) -> re.Pattern[str]:
    noun = _MODEL_NOUN[code]
    return re.compile(rf"(?:^|[.!?,;:\n(]|\b(?:{p.lead})\b)\s*(?P<phrase>(?:{p.as_model})(?:{noun})){_END}", _FLAGS)


def _am_model(code: str, p: Phrases) -> re.Pattern[str]:
    return re.compile(rf"\b(?:{p.am_model})(?:{_MODEL_NOUN[code]}){_END}", _FLAGS)


def _decline(p: Phrases) -> re.Pattern[str]:
    after_apology = rf"(?:{p.unable})" + (rf"|(?:[\w-]+\s+){{0,2}}?(?:{p.inverted})" if p.inverted else "")
    task = rf"(?={_CLAUSE}\b(?:{p.task}){_END})"
    return re.compile(rf"{_START}(?:(?:{p.apology})\W*(?:(?:{p.but})\s+)?(?:{after_apology})|(?:{p.unable})){task}{_SENTENCE}",
                      _FLAGS)


_AS_MODEL = {code: _as_model(code, p) for code, p in PHRASES.items()}
_AM_MODEL = {code: _am_model(code, p) for code, p in PHRASES.items()}
_FIRST_PERSON = {code: re.compile(rf"(?<![\w-])(?:{p.first_person})(?![\w-])", _FLAGS) for code, p in PHRASES.items()}
_DECLINE = {code: _decline(p) for code, p in PHRASES.items()}
LANGUAGES: tuple[str, ...] = tuple(PHRASES)


def _sentence(text: str, start: int, end: int) -> str:
    """The sentence around text[start:end] (from the last . ! ? or line break before it to the next)."""
    before = max(text.rfind(mark, 0, start) for mark in ".!?\n") + 1
    after = [i for i in (text.find(mark, end) for mark in ".!?\n") if i >= 0]
    return text[before:min(after, default=len(text))]


def speaks_as_model(text: str) -> Iterator[tuple[int, int]]:
    """Spans where the text, in one of these languages, names itself a language model (or AI model)."""
    for code in LANGUAGES:
        for match in _AM_MODEL[code].finditer(text):
            yield match.span()
        for match in _AS_MODEL[code].finditer(text):
            start, end = match.span("phrase")
            if _FIRST_PERSON[code].search(_sentence(text, start, end)):
                yield start, end


def opening_decline(text: str) -> re.Match[str] | None:
    """The answer opens by declining the task in one of these languages; the match is that opening sentence."""
    for code in LANGUAGES:
        match = _DECLINE[code].search(text)
        if match:
            return match
    return None
