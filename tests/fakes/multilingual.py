"""A model for the loopback server that answers in the seeds' language, but drifts into English.

    with OpenAIServer(ServerOptions(material="synthetic")) as server:
        model = DriftingModel(server, "de")
        ...
        model.kind_of(instruction, output)      # which kind of block the server made it

Every answer holds five blocks in prompt.txt's format (English labels, as every
prompt_<lang>.txt asks), each of one kind, chosen from the prompt's hash (deterministic, so a
resumed run gets the same answers):

- `native`: instruction and output in the language;
- `english`: instruction and output in English (the model left the language);
- `english_output`: the instruction in the language, the output in English;
- `translation`: "translate into English: «...»" in the language, the output in English (right);
- `code`: the instruction in the language, the output a fenced code block only;
- `quoted`: the instruction in the language quoting an English sentence, the output in the language.

The first two kinds are what the language check must reject; the others it must keep.
Material written for these tests: de, fr, es and ru.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading

from tests.fakes.openai_server import (
    OpenAIServer,
    RouteRequest,
    RouteResponse,
    chat_reply,
    completion_reply,
)

DRIFT_KINDS = ("english", "english_output")
KEPT_KINDS = ("native", "translation", "code", "quoted")
_KINDS = ("native", "native", "english", "english_output", "translation", "code", "quoted")

# Per language: instruction templates ({s}: a subject, {a}: an aspect), subjects, aspects,
# output sentences ({s}), a translation request ({q}: a sentence in the language), sentences to
# translate with their English, a code request, a request quoting English ({q}), and a context
# clause ({c}: four nouns of the pool) added to the instructions.
MATERIAL: dict[str, dict[str, tuple[str, ...]]] = {
    "de": {
        "templates": (
            "Erkläre in drei Sätzen, warum {a} für {s} wichtig ist.",
            "Nenne drei häufige Fehler von {s} beim Thema {a}.",
            "Schreibe einen kurzen Ratgeber über {a} für {s}.",
            "Vergleiche zwei Wege, wie {s} ihre {a} verbessern können.",
            "Fasse zusammen, worauf {s} bei der {a} achten sollten.",
            "Schlage fünf Fragen für eine Umfrage unter {s} zur {a} vor.",
            "Formuliere drei praktische Tipps zur {a} für {s}.",
            "Beschreibe, wie sich die {a} von {s} im Winter verändert.",
        ),
        "subjects": ("Senioren", "Studierende", "kleine Bäckereien", "Landschulen", "Pendler", "Pflegekräfte",
                     "Hundebesitzer", "Gründerteams", "Hobbygärtner", "Berufsanfänger"),
        "aspects": ("Schlafqualität", "Ernährung", "Zeitplanung", "Haushaltskasse", "Kommunikation", "Sicherheit",
                    "Lernplanung", "Bewegung", "Stressbewältigung", "Freizeitgestaltung"),
        "outputs": (
            "Für {s} lohnt es sich, jeden Tag zur gleichen Zeit damit anzufangen und kleine Schritte zu planen.",
            "Am wichtigsten ist für {s}, regelmäßig Pausen zu machen und die eigenen Gewohnheiten ehrlich zu prüfen.",
            "Viele {s} unterschätzen, wie viel eine feste Routine bringt; schon zwei Wochen zeigen den Unterschied.",
        ),
        "translation": ("Übersetze ins Englische: „{q}“",),
        "to_translate": ("Ich komme morgen etwas später ins Büro.|I will come to the office a little later tomorrow.",
                         "Der Zug nach Hamburg fällt heute aus.|The train to Hamburg is cancelled today.",
                         "Wir haben noch genug Mehl für zwei Brote.|We still have enough flour for two loaves."),
        "code": ("Schreibe eine Python-Funktion, die für {s} die {a} als Punktzahl von 1 bis 10 ausgibt.",),
        "quoted": ("Erkläre einem Kind die Redewendung „{q}“ mit einfachen Worten.",),
        "context": (" und denke dabei an {c}",),
        "nouns": ("Garten", "Kaffee", "Fahrrad", "Bibliothek", "Nachbarn", "Regen", "Bahnhof", "Kinder", "Urlaub",
                  "Rezepte", "Geburtstage", "Sportverein", "Wochenmarkt", "Handwerker", "Kalender", "Balkon",
                  "Sparbuch", "Bergtour", "Großeltern", "Gemüse", "Werkstatt", "Zeitung", "Schwimmbad", "Flohmarkt"),
    },
    "fr": {
        "templates": (
            "Explique en trois phrases pourquoi {a} compte pour {s}.",
            "Cite trois erreurs fréquentes des {s} en matière de {a}.",
            "Rédige un court guide sur {a} destiné aux {s}.",
            "Compare deux manières pour les {s} d'améliorer leur {a}.",
            "Résume ce à quoi les {s} doivent veiller pour leur {a}.",
            "Propose cinq questions pour un sondage auprès des {s} sur {a}.",
            "Donne trois conseils pratiques sur {a} aux {s}.",
            "Décris comment {a} des {s} change pendant l'hiver.",
        ),
        "subjects": ("retraités", "étudiants", "petites boulangeries", "écoles rurales", "navetteurs", "infirmiers",
                     "propriétaires de chiens", "jeunes entreprises", "jardiniers amateurs", "jeunes diplômés"),
        "aspects": ("le sommeil", "l'alimentation", "l'organisation du temps", "le budget", "la communication",
                    "la sécurité", "les révisions", "l'activité physique", "la gestion du stress", "les loisirs"),
        "outputs": (
            "Pour les {s}, il vaut mieux commencer chaque jour à la même heure et avancer par petites étapes.",
            "Le plus important pour les {s} est de faire des pauses régulières et de revoir leurs habitudes.",
            "Beaucoup de {s} sous-estiment l'effet d'une routine fixe ; deux semaines suffisent pour le voir.",
        ),
        "translation": ("Traduis en anglais : « {q} »",),
        "to_translate": ("J'arriverai un peu plus tard au bureau demain.|I will arrive at the office a bit later tomorrow.",
                         "Le train pour Lyon est annulé aujourd'hui.|The train to Lyon is cancelled today.",
                         "Il nous reste assez de farine pour deux pains.|We still have enough flour for two loaves."),
        "code": ("Écris une fonction Python qui donne aux {s} une note de 1 à 10 pour {a}.",),
        "quoted": ("Explique à un enfant l'expression « {q} » avec des mots simples.",),
        "context": (" en pensant aussi à {c}",),
        "nouns": ("jardin", "café", "vélo", "bibliothèque", "voisins", "pluie", "gare", "enfants", "vacances",
                  "recettes", "anniversaires", "club de sport", "marché", "artisans", "calendrier", "balcon",
                  "épargne", "randonnée", "grands-parents", "légumes", "atelier", "journal", "piscine", "brocante"),
    },
    "es": {
        "templates": (
            "Explica en tres frases por qué {a} es importante para {s}.",
            "Enumera tres errores frecuentes de {s} con {a}.",
            "Escribe una guía breve sobre {a} pensada para {s}.",
            "Compara dos formas en que {s} pueden mejorar {a}.",
            "Resume lo que {s} deben vigilar en {a}.",
            "Propón cinco preguntas para una encuesta a {s} sobre {a}.",
            "Da tres consejos prácticos sobre {a} a {s}.",
            "Describe cómo cambia {a} de {s} durante el invierno.",
        ),
        "subjects": ("los jubilados", "los estudiantes", "las panaderías pequeñas", "las escuelas rurales",
                     "los viajeros diarios", "las enfermeras", "los dueños de perros", "las empresas nuevas",
                     "los jardineros aficionados", "los recién titulados"),
        "aspects": ("el sueño", "la alimentación", "la gestión del tiempo", "el presupuesto", "la comunicación",
                    "la seguridad", "el estudio", "la actividad física", "el estrés", "el tiempo libre"),
        "outputs": (
            "A {s} les conviene empezar cada día a la misma hora y avanzar con pasos pequeños y claros.",
            "Lo más importante para {s} es hacer pausas regulares y revisar con honestidad sus costumbres.",
            "Muchas veces {s} subestiman el efecto de una rutina fija; en dos semanas ya se nota la diferencia.",
        ),
        "translation": ("Traduce al inglés: «{q}»",),
        "to_translate": ("Mañana llegaré un poco más tarde a la oficina.|I will get to the office a little later tomorrow.",
                         "El tren a Sevilla está cancelado hoy.|The train to Seville is cancelled today.",
                         "Todavía tenemos harina para dos panes.|We still have enough flour for two loaves."),
        "code": ("Escribe una función de Python que dé a {s} una nota del 1 al 10 para {a}.",),
        "quoted": ("Explica a un niño la expresión «{q}» con palabras sencillas.",),
        "context": (" y piensa también en {c}",),
        "nouns": ("jardín", "café", "bicicleta", "biblioteca", "vecinos", "lluvia", "estación", "niños",
                  "vacaciones", "recetas", "cumpleaños", "club deportivo", "mercado", "artesanos", "calendario",
                  "balcón", "ahorros", "excursión", "abuelos", "verduras", "taller", "periódico", "piscina",
                  "rastro"),
    },
    "ru": {
        "templates": (
            "Объясни в трёх предложениях, почему {a} важна для {s}.",
            "Назови три частые ошибки {s}, связанные с темой «{a}».",
            "Напиши короткую памятку про {a} для {s}.",
            "Сравни два способа, которыми {s} могут улучшить {a}.",
            "Перечисли, на что {s} стоит обратить внимание, когда речь идёт про {a}.",
            "Предложи пять вопросов для опроса {s} про {a}.",
            "Дай три практических совета про {a} для {s}.",
            "Опиши, как зимой меняется {a} у {s}.",
        ),
        "subjects": ("пенсионеров", "студентов", "небольших пекарен", "сельских школ", "жителей пригородов",
                     "медсестёр", "владельцев собак", "молодых компаний", "садоводов-любителей", "выпускников"),
        "aspects": ("качество сна", "питание", "распределение времени", "домашний бюджет", "общение",
                    "безопасность", "подготовка к экзаменам", "физическая активность", "борьба со стрессом",
                    "отдых"),
        "outputs": (
            "Для {s} полезно каждый день начинать в одно и то же время и двигаться небольшими шагами.",
            "Самое важное для {s} — регулярно делать перерывы и честно пересматривать свои привычки.",
            "Многие из {s} недооценивают пользу твёрдого распорядка; разница заметна уже через две недели.",
        ),
        "translation": ("Переведи на английский: «{q}»",),
        "to_translate": ("Завтра я приду в офис немного позже.|I will come to the office a little later tomorrow.",
                         "Поезд в Казань сегодня отменён.|The train to Kazan is cancelled today.",
                         "У нас ещё хватит муки на два хлеба.|We still have enough flour for two loaves."),
        "code": ("Напиши функцию на Python, которая ставит {s} оценку от 1 до 10 за {a}.",),
        "quoted": ("Объясни ребёнку простыми словами выражение «{q}».",),
        "context": (" и подумай также про {c}",),
        "nouns": ("сад", "кофе", "велосипед", "библиотеку", "соседей", "дождь", "вокзал", "детей", "отпуск",
                  "рецепты", "дни рождения", "спортклуб", "рынок", "мастеров", "календарь", "балкон",
                  "сбережения", "поход", "бабушек", "овощи", "мастерскую", "газету", "бассейн", "барахолку"),
    },
}

# What a model drifting into English writes.
ENGLISH_TEMPLATES = (
    "Explain in three sentences why {a} matters for {s}.",
    "List three common mistakes that {s} make with {a}.",
    "Write a short guide on {a} for {s}.",
    "Compare two ways in which {s} can improve their {a}.",
    "Suggest five survey questions for {s} about their {a}.",
)
ENGLISH_SUBJECTS = ("retirees", "students", "small bakeries", "rural schools", "commuters", "nurses", "dog owners",
                    "startup teams", "hobby gardeners", "young graduates")
ENGLISH_ASPECTS = ("sleep quality", "diet", "time management", "household budget", "communication", "safety",
                   "study planning", "exercise", "stress", "free time")
ENGLISH_OUTPUTS = (
    "It helps to start at the same time every day and to plan small, concrete steps that are easy to keep.",
    "The most important thing is to take regular breaks and to look honestly at the habits that get in the way.",
    "Many people underestimate how much a fixed routine helps; after two weeks the difference is easy to see.",
)
ENGLISH_QUOTES = ("the early bird catches the worm", "don't judge a book by its cover",
                  "every cloud has a silver lining")
CODE_OUTPUT = "```python\ndef score(hours: float) -> int:\n    return max(1, min(10, round(hours)))\n```"


def _with(sentence: str, context: str) -> str:
    """The sentence with the context before its final punctuation."""
    return sentence[:-1] + context + sentence[-1]


class DriftingModel:
    """Chat and completions routes added to the real loopback server, answering in `language`."""

    def __init__(self, server: OpenAIServer, language: str) -> None:
        self.material = MATERIAL[language]
        self.language = language
        self.kinds: dict[tuple[str, str], str] = {}  # (instruction, output) -> kind, for every block served
        self.lock = threading.Lock()
        server.add_route("POST", "/v1/chat/completions", self.chat)
        server.add_route("POST", "/v1/completions", self.completions)

    def kind_of(self, instruction: str, output: str) -> str:
        """The kind of a block this model served."""
        return self.kinds[(instruction, output)]

    def _block(self, number: int, rng: random.Random, kind: str) -> str:
        m = self.material
        subject, aspect = rng.choice(m["subjects"]), rng.choice(m["aspects"])
        # Four nouns from a pool make most instructions unlike each other (below the dedup threshold).
        context = rng.choice(m["context"]).format(c=", ".join(rng.sample(m["nouns"], 4)))
        instruction = _with(rng.choice(m["templates"]).format(s=subject, a=aspect), context)
        output = rng.choice(m["outputs"]).format(s=subject)
        if kind == "english":
            instruction = rng.choice(ENGLISH_TEMPLATES).format(s=rng.choice(ENGLISH_SUBJECTS),
                                                               a=rng.choice(ENGLISH_ASPECTS))
            output = rng.choice(ENGLISH_OUTPUTS)
        elif kind == "english_output":
            output = rng.choice(ENGLISH_OUTPUTS)
        elif kind == "translation":
            original, english = rng.choice(m["to_translate"]).split("|")
            # A subject makes each translation task a different instruction (dedup would drop repeats).
            instruction = rng.choice(m["translation"]).format(q=f"{original} ({subject})")
            output = f"{english} ({subject})"
        elif kind == "code":
            instruction = _with(rng.choice(m["code"]).format(s=subject, a=aspect), context)
            output = CODE_OUTPUT
        elif kind == "quoted":
            instruction = _with(rng.choice(m["quoted"]).format(q=rng.choice(ENGLISH_QUOTES)), context)
        with self.lock:
            self.kinds[(instruction, output)] = kind
        return f"{number}. Instruction: {instruction}\n{number}. Input:\n<noinput>\n{number}. Output:\n{output}\n"

    def answer(self, prompt: str, restate: bool) -> str:
        """Five blocks after the prompt's last example, a function of the prompt alone."""
        numbers = re.findall(r"(\d+)\. Instruction:", prompt)
        first = int(numbers[-1])
        rng = random.Random(hashlib.sha256(prompt.encode()).hexdigest())
        text = "###\n".join(self._block(first + i, rng, rng.choice(_KINDS)) for i in range(5))
        return text if restate else text[len(f"{first}. Instruction:"):]

    def chat(self, request: RouteRequest) -> RouteResponse:
        body = request.json()
        prompt = "\n".join(m["content"] for m in body["messages"])
        text = self.answer(prompt, restate=True)
        return chat_reply(body["model"], text, len(prompt) // 4, len(text) // 4)

    def completions(self, request: RouteRequest) -> RouteResponse:
        body = request.json()
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        texts = [self.answer(p, restate=False) for p in prompts]
        return completion_reply(body["model"], texts, sum(map(len, prompts)) // 4, sum(map(len, texts)) // 4)
