"""Refusals in the first-class languages besides English and Chinese: removed with their span;
ordinary answers that use the same words in their normal sense are kept.

Every item is written for these tests. The kept answers are the tempting cases: "leider",
"désolé", "no puedo", "не могу" inside a story, a letter or a weather report the task asked
for, or opening a sentence that declines nothing a model declines.
"""

from __future__ import annotations

import pytest

from generate.quality.detectors import as_item, clean_items, find_hit, find_hits
from generate.quality.domain import check_examples
from generate.quality.evidence import Relaxation

# (language, instruction, output, rule, the evidence span's text)
REMOVED = [
    ("de", "Beschreibe das Bild vom Hafen.", "Es tut mir leid, aber ich kann keine Bilder ansehen. Beschreiben Sie es mir.",
     "refusal.decline", "Es tut mir leid, aber ich kann keine Bilder ansehen"),
    ("de", "Was hältst du von moderner Kunst?", "Als KI-Sprachmodell habe ich keine persönlichen Meinungen.",
     "refusal.language_model", "Als KI-Sprachmodell"),
    ("de", "Wie wird das Wetter morgen in Köln?", "Leider kann ich keine Echtzeitdaten abrufen, schauen Sie beim Wetterdienst.",
     "refusal.decline", "Leider kann ich keine Echtzeitdaten abrufen, schauen Sie beim Wetterdienst"),
    ("de", "Welche Partei ist die beste?", "Das ist schwierig. Ich bin nur ein Sprachmodell und treffe keine Wahl.",
     "refusal.language_model", "Ich bin nur ein Sprachmodell"),
    ("de", "Fasse den Artikel zusammen.", "Ich habe keinen Zugriff auf das Internet.",
     "refusal.decline", "Ich habe keinen Zugriff auf das Internet"),
    ("fr", "Décris la photo ci-dessus.", "Je suis désolé, mais je ne peux pas voir les images.",
     "refusal.decline", "Je suis désolé, mais je ne peux pas voir les images"),
    ("fr", "Quel est ton film préféré ?", "En tant que modèle de langage d'IA, je n'ai pas de préférences.",
     "refusal.language_model", "En tant que modèle de langage d'IA"),
    ("fr", "Quelle heure est-il à Lyon ?", "Malheureusement, je n'ai pas accès à l'heure en temps réel.",
     "refusal.decline", "Malheureusement, je n'ai pas accès à l'heure en temps réel"),
    ("es", "Describe la imagen adjunta.", "Lo siento, pero no puedo ver imágenes.",
     "refusal.decline", "Lo siento, pero no puedo ver imágenes"),
    ("es", "¿Qué opinas del fútbol?", "Como modelo de lenguaje, no tengo opiniones personales sobre deportes.",
     "refusal.language_model", "Como modelo de lenguaje"),
    ("es", "Resume esta página web.", "No puedo acceder a enlaces externos. Pega el texto aquí.",
     "refusal.decline", "No puedo acceder a enlaces externos"),
    ("pt", "Abra o link e resuma.", "Desculpe, mas não posso abrir links.",
     "refusal.decline", "Desculpe, mas não posso abrir links"),
    ("pt", "Você gosta de música?", "Como um modelo de linguagem, eu não tenho gostos pessoais.",
     "refusal.language_model", "Como um modelo de linguagem"),
    ("pt", "Qual é a cotação do dólar hoje?", "Infelizmente, não tenho acesso a dados em tempo real.",
     "refusal.decline", "Infelizmente, não tenho acesso a dados em tempo real"),
    ("it", "Aiutami a scrivere una lettera di reclamo.", "Mi dispiace, ma non posso aiutarti con questa richiesta.",
     "refusal.decline", "Mi dispiace, ma non posso aiutarti con questa richiesta"),
    ("it", "Qual è il tuo colore preferito?", "Come modello linguistico, non ho preferenze personali.",
     "refusal.language_model", "Come modello linguistico"),
    ("it", "Guarda il video e riassumilo.", "Purtroppo non sono in grado di guardare video.",
     "refusal.decline", "Purtroppo non sono in grado di guardare video"),
    ("nl", "Beschrijf de foto.", "Het spijt me, maar ik kan geen afbeeldingen bekijken.",
     "refusal.decline", "Het spijt me, maar ik kan geen afbeeldingen bekijken"),
    ("nl", "Wat vind jij van jazz?", "Als AI-taalmodel heb ik geen persoonlijke mening over muziek.",
     "refusal.language_model", "Als AI-taalmodel"),
    ("nl", "Open de website en vat hem samen.", "Helaas kan ik geen websites openen.",
     "refusal.decline", "Helaas kan ik geen websites openen"),
    ("ru", "Опиши изображение.", "Извините, но я не могу просматривать изображения.",
     "refusal.decline", "Извините, но я не могу просматривать изображения"),
    ("ru", "Какой твой любимый писатель?", "Как языковая модель, я не имею личных предпочтений.",
     "refusal.language_model", "Как языковая модель"),
    ("ru", "Какая сейчас погода в Казани?", "К сожалению, у меня нет доступа к интернету.",
     "refusal.decline", "К сожалению, у меня нет доступа к интернету"),
    ("pl", "Streść ten artykuł z linku.", "Przepraszam, ale nie mogę otworzyć tego linku.",
     "refusal.decline", "Przepraszam, ale nie mogę otworzyć tego linku"),
    ("pl", "Jaki jest twój ulubiony sport?", "Jako model językowy nie mam osobistych preferencji.",
     "refusal.language_model", "Jako model językowy"),
    ("pl", "Opisz to zdjęcie.", "Niestety nie jestem w stanie zobaczyć zdjęć.",
     "refusal.decline", "Niestety nie jestem w stanie zobaczyć zdjęć"),
]

# (language, instruction, output): answers to keep.
KEPT = [
    ("de", "Schreibe eine kurze Wettergeschichte für Kinder.",
     "Leider regnet es heute, also bauen Mia und Ben eine Höhle aus Decken und lesen Geschichten."),
    ("de", "Erzähle eine Geschichte über einen verlorenen Schlüssel.",
     "Ich kann nicht glauben, dass das Video schon vorbei ist, dachte Tom, als der Schlüssel klirrte."),
    ("de", "Schreibe eine Absage an Oma für Sonntag.",
     "Liebe Oma, es tut mir leid, aber ich kann am Sonntag nicht kommen. Ich besuche dich nächste Woche."),
    ("de", "Erkläre, was GPT-3 ist.",
     "GPT-3 dient als Sprachmodell, das das nächste Wort vorhersagt. Leider macht es dabei auch Fehler."),
    ("de", "Wie erinnerst du dich an Namen?",
     "Leider kann ich mich nicht immer erinnern, deshalb verbinde ich jeden Namen mit einem Bild."),
    ("de", "Nenne ein Synonym für 'bedauerlich'.", "Leider ist kein genaues Synonym, aber 'schade' passt oft."),
    ("de", "Beschreibe eine Autofahrt durch die Stadt.", "Ich kann hier nicht nach links abbiegen, also fahre ich geradeaus."),
    ("fr", "Écris le début d'une histoire au bord de la mer.",
     "Je ne peux pas m'empêcher de sourire quand je vois la mer. Le vent sent le sel."),
    ("fr", "Écris un SMS pour décliner une invitation.",
     "Désolé, mais je ne peux pas venir à ta fête samedi. On se voit bientôt !"),
    ("fr", "Comment s'excuser poliment en français ?",
     "On peut dire « Je suis désolé » ou « Veuillez m'excuser ». Malheureusement, les deux sont souvent confondus."),
    ("fr", "Explique ce qu'est BERT.",
     "BERT sert de modèle de langage pré-entraîné. En tant que modèle de langage, il prédit des mots masqués."),
    ("fr", "Écris un dialogue entre deux amis.",
     "— Je ne peux pas t'aider ce soir, dit Paul.\n— Tant pis, répondit Léa."),
    ("fr", "Écris un courriel d'excuse à ton équipe.", "Je ne peux pas assister à la réunion de lundi, je suis malade."),
    ("es", "Escribe un poema sobre la lluvia.",
     "No puedo evitar sonreír cuando llueve sobre el mar. Lo siento en la piel como un abrazo."),
    ("es", "Escribe un mensaje para rechazar una boda.",
     "Lo siento mucho, pero no puedo asistir a tu boda. Os deseo lo mejor."),
    ("es", "Explica qué es BERT.", "Uso BERT como modelo de lenguaje en mis proyectos, y funciona bien para clasificar textos."),
    ("es", "¿Qué tiempo hizo ayer?", "Lamentablemente, llovió todo el día en Sevilla y no pudimos salir."),
    ("es", "Traduce 'I am sorry' al español.", "Lo siento."),
    ("es", "Escribe una carta de amor.", "No puedo expresar lo feliz que estoy desde que te conocí."),
    ("pt", "Escreva uma carta para um amigo distante.",
     "Infelizmente não posso visitar você este ano, mas penso em você todos os dias."),
    ("pt", "Descreva um dia de chuva.", "Desculpe a demora do sol: hoje a chuva não para e as ruas brilham."),
    ("pt", "Conte uma história curta.", "Não posso acreditar, disse Ana, ao ver o mar pela primeira vez."),
    ("pt", "O que é um modelo de linguagem?",
     "Um modelo de linguagem prevê a próxima palavra. O GPT funciona como um modelo de linguagem treinado em textos."),
    ("pt", "Como pedir desculpas em português?", "Diga 'desculpe' ou 'sinto muito'; infelizmente, muitos esquecem."),
    ("it", "Scrivi una breve storia d'amore.",
     "Non posso fare a meno di pensarti ogni volta che passo davanti al mare."),
    ("it", "Scrivi un messaggio per rifiutare un invito a cena.",
     "Mi dispiace, ma non posso venire a cena venerdì. Facciamo la settimana prossima?"),
    ("it", "Che tempo fa a Milano?", "Purtroppo oggi piove a Milano, quindi porta l'ombrello."),
    ("it", "Spiega cos'è GPT.", "GPT viene usato come modello linguistico per generare testi in molte lingue."),
    ("it", "Come si dice 'sorry' in italiano?", "Si dice 'mi dispiace' oppure 'scusa'."),
    ("it", "Scrivi l'inizio di un racconto d'inverno.", "Non posso aprire la finestra: il vento di gennaio è troppo forte."),
    ("nl", "Schrijf een kort verhaal over een kat.",
     "Ik kan het niet helpen dat ik lach als de kat in de doos springt."),
    ("nl", "Schrijf een afzegging voor een verjaardag.",
     "Het spijt me, maar ik kan zaterdag niet komen. Ik trakteer je volgende week op taart."),
    ("nl", "Hoe is het weer in Utrecht?", "Helaas regent het vandaag in Utrecht, dus neem een paraplu mee."),
    ("nl", "Wat is een taalmodel?", "Een taalmodel voorspelt woorden. GPT werkt als taalmodel met miljarden parameters."),
    ("nl", "Geef een synoniem voor 'helaas'.", "Jammer genoeg, of spijtig genoeg."),
    ("ru", "Напиши короткий рассказ о море.",
     "Не могу поверить, что снова вижу море, подумала Аня, и засмеялась."),
    ("ru", "Напиши отказ от приглашения на ужин.",
     "Извините, но я не могу прийти на ужин в пятницу. Давайте встретимся в субботу."),
    ("ru", "Какая погода была вчера?", "К сожалению, вчера весь день шёл дождь, и мы остались дома."),
    ("ru", "Что такое GPT?", "GPT работает как языковая модель: он предсказывает следующее слово."),
    ("ru", "Как извиниться по-русски?", "Можно сказать «извините» или «простите», это вежливо."),
    ("pl", "Napisz krótkie opowiadanie o jesieni.",
     "Nie mogę uwierzyć, że liście już spadły, pomyślała Ola, patrząc w okno."),
    ("pl", "Napisz odmowę zaproszenia na urodziny.",
     "Przepraszam, ale nie mogę przyjść w sobotę. Mam nadzieję, że będzie wspaniale!"),
    ("pl", "Jaka jest pogoda w Krakowie?", "Niestety dziś w Krakowie pada deszcz, więc weź parasol."),
    ("pl", "Czym jest GPT?", "GPT działa jako model językowy, który przewiduje kolejne słowa."),
    ("pl", "Jak przeprosić po polsku?", "Wystarczy powiedzieć „przepraszam” albo „przykro mi”."),
    ("pl", "Napisz wiersz o ciszy.", "Nie mogę znaleźć odpowiedniego słowa na tę ciszę o świcie."),
]

# In role-play a persona's decline is the story: the other languages' declines are not applied.
ROLEPLAY_KEPT = [
    ("de", "Du bist ein Burgwächter. Ein Reisender will um Mitternacht hinein.",
     "Es tut mir leid, aber ich kann Euch ohne das Siegel des Hauptmanns nicht helfen. Kommt im Morgengrauen wieder."),
    ("fr", "Joue le rôle d'un libraire. Un client veut un livre interdit.",
     "Je suis désolé, mais je ne peux pas vous fournir ce livre : le roi l'a interdit."),
    ("es", "Eres un capitán pirata. Un marinero pide ayuda.", "Lo siento, pero no puedo ayudarte, grumete: la marea manda."),
    ("ru", "Ты — старый смотритель маяка. Гость просит ключ.", "Извините, но я не могу открыть вам дверь маяка ночью."),
]


@pytest.mark.parametrize("code, instruction, output, rule, text", REMOVED, ids=[f"{r[0]}-{n}" for n, r in enumerate(REMOVED)])
def test_refusal_in_the_language_is_removed_with_its_span(code, instruction, output, rule, text):
    hit = find_hit(as_item(instruction, "", output))
    assert (hit.rule, hit.field, hit.text) == (rule, "output", text)
    assert (hit.start, output[hit.start:hit.end]) == (output.find(text), text)


@pytest.mark.parametrize("code, instruction, output", KEPT, ids=[f"{r[0]}-{n}" for n, r in enumerate(KEPT)])
def test_ordinary_answer_with_the_tempting_words_is_kept(code, instruction, output):
    assert find_hits(as_item(instruction, "", output)) == []


def test_every_language_has_its_cases():
    languages = ("de", "fr", "es", "pt", "it", "nl", "ru", "pl")
    removed = {code: sum(1 for r in REMOVED if r[0] == code) for code in languages}
    kept = {code: sum(1 for r in KEPT if r[0] == code) for code in languages}
    assert min(removed.values()) >= 3 and min(kept.values()) >= 5, (removed, kept)
    assert {r[3] for r in REMOVED if r[0] == "de"} == {"refusal.decline", "refusal.language_model"}


def test_a_persona_declines_in_story_in_any_language():
    data = [as_item(instruction, "", output) for _, instruction, output in ROLEPLAY_KEPT]
    assert clean_items(data).kept == data


def test_the_language_model_rule_runs_in_role_play_too():
    item = as_item("Du bist Kapitän Nemo. Beschreibe dein U-Boot.", "",
                   "Als KI-Sprachmodell kann ich keine Rolle spielen.")
    assert (find_hit(item).rule, find_hit(item).text) == ("refusal.language_model", "Als KI-Sprachmodell")


def test_a_test_string_in_code_is_data_in_any_language():
    output = 'def greet():\n    return "Als KI-Sprachmodell habe ich keine Meinung."\n'
    assert find_hits(as_item("Schreibe eine Python-Funktion, die einen Satz zurückgibt.", "", output)) == []


def test_seeds_that_decline_in_german_relax_the_decline_rule():
    """A customer-service domain whose answers open by declining: its seeds relax the rule."""
    examples = [
        ("s1", as_item("Ein Kunde will sein Passwort per Mail.", "", "Es tut mir leid, aber ich kann Passwörter nicht "
                       "per Mail bereitstellen. Bitte nutzen Sie die Seite 'Passwort vergessen'.")),
        ("s2", as_item("Ein Kunde fragt nach fremden Kontodaten.", "", "Leider kann ich Ihnen dabei nicht helfen, denn "
                       "die Daten gehören einem anderen Kunden.")),
        ("s3", as_item("Nenne drei Obstsorten.", "", "Apfel, Birne, Pflaume.")),
    ]
    check = check_examples(examples, noun="seed tasks")
    assert check.settings.relaxed == (Relaxation(
        "refusal.decline", "fires on 2 of 3 seed tasks (67%; threshold 2): ids s1, s2"),)
    assert find_hit(examples[1][1], check.settings) is None
