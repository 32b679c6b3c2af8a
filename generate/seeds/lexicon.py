"""Words the first-class languages need, written for this project: blacklists and language names.

The blacklists say, in each language, what the reference's English list says: things a
text-only model cannot see, make or open (images, pictures, graphs, diagrams, flowcharts,
maps, files, video, audio, music) and actions outside the text (draw, plot, go to). They
are matched as whole words, case-insensitively, so the inflected forms an instruction
would use are listed; a phrase ("gehe zu") matches as a whole. Words whose everyday
meaning is mostly something else are left out: German "Karte" and French "carte" (a card,
a menu), Dutch "teken" alone (a sign; "teken een" is listed), Russian "карта" (a card).

`LANGUAGE_NAMES`: the stems that name each language in any of the first-class languages
("Englisch", "anglais", "английский" ...). An instruction that names a language other than
the run's, or asks for a translation (`TRANSLATION_WORDS`), may rightly get an output in
that language; the language check leaves such outputs alone (generate/seeds/language_check.py).
"""

from __future__ import annotations

BLACKLISTS: dict[str, tuple[str, ...]] = {
    "de": (
        "bild", "bilder", "bildern", "bildes", "foto", "fotos", "grafik", "grafiken", "schaubild",
        "schaubilder", "diagramm", "diagramme", "diagrammen", "diagramms", "flussdiagramm",
        "flussdiagramme", "datei", "dateien", "landkarte", "landkarten", "stadtplan", "zeichne",
        "zeichnen", "zeichnet", "zeichnung", "zeichnungen", "plotte", "plotten", "gehe zu", "geh zu",
        "video", "videos", "audio", "audiodatei", "musik", "tonaufnahme",
    ),
    "fr": (
        "image", "images", "photo", "photos", "graphique", "graphiques", "graphe", "graphes",
        "diagramme", "diagrammes", "organigramme", "logigramme", "schéma", "schémas", "fichier",
        "fichiers", "carte géographique", "cartes géographiques", "plan de la ville", "dessine",
        "dessinez", "dessiner", "dessin", "dessins", "va à", "allez à", "rends-toi", "vidéo", "vidéos",
        "audio", "musique",
    ),
    "es": (
        "imagen", "imágenes", "foto", "fotos", "fotografía", "gráfico", "gráficos", "gráfica",
        "diagrama", "diagramas", "diagrama de flujo", "archivo", "archivos", "fichero", "ficheros",
        "mapa", "mapas", "dibuja", "dibujar", "dibujo", "dibujos", "ve a", "vaya a", "vídeo", "vídeos",
        "video", "videos", "audio", "música",
    ),
    "pt": (
        "imagem", "imagens", "foto", "fotos", "fotografia", "gráfico", "gráficos", "diagrama",
        "diagramas", "fluxograma", "arquivo", "arquivos", "ficheiro", "ficheiros", "mapa", "mapas",
        "desenhe", "desenha", "desenhar", "desenho", "desenhos", "vá a", "vá até", "vai a", "vídeo",
        "vídeos", "áudio", "música",
    ),
    "it": (
        "immagine", "immagini", "foto", "fotografia", "fotografie", "grafico", "grafici", "diagramma",
        "diagrammi", "diagramma di flusso", "file", "mappa", "mappe", "cartina", "cartine", "disegna",
        "disegnate", "disegnare", "disegno", "disegni", "vai a", "andate a", "video", "audio", "musica",
    ),
    "nl": (
        "afbeelding", "afbeeldingen", "plaatje", "plaatjes", "foto", "foto's", "grafiek", "grafieken",
        "diagram", "diagrammen", "stroomdiagram", "bestand", "bestanden", "landkaart", "landkaarten",
        "plattegrond", "teken een", "tekenen", "tekening", "tekeningen", "ga naar", "video", "video's",
        "audio", "muziek",
    ),
    "ru": (
        "изображение", "изображения", "изображений", "картинка", "картинку", "картинки", "фото",
        "фотографию", "фотографии", "график", "графика", "графики", "графиков", "диаграмма",
        "диаграмму", "диаграммы", "блок-схема", "блок-схему", "файл", "файла", "файлы", "файлов",
        "карту местности", "нарисуй", "нарисуйте", "нарисовать", "рисунок", "рисунки", "перейди на",
        "перейдите на", "видео", "видеоролик", "аудио", "аудиозапись", "музыка", "музыку", "музыки",
    ),
    "pl": (
        "obraz", "obrazek", "obrazka", "obrazy", "zdjęcie", "zdjęcia", "zdjęć", "grafika", "grafikę",
        "wykres", "wykresu", "wykresy", "diagram", "diagramu", "diagramy", "schemat blokowy", "plik",
        "pliku", "pliki", "plików", "mapa", "mapę", "mapy", "narysuj", "narysujcie", "narysować",
        "rysunek", "idź do", "wideo", "nagranie", "audio", "muzyka", "muzykę", "muzyki",
    ),
}

# Stems naming each language in the nine first-class languages (matched at a word's start,
# case-insensitively: "Englische", "anglaise", "английского" ...).
LANGUAGE_NAMES: dict[str, tuple[str, ...]] = {
    "en": ("english", "englisch", "anglais", "inglés", "ingles", "inglês", "inglese", "engels", "английск",
           "по-английски", "angielsk", "po angielsku"),
    "de": ("german", "deutsch", "allemand", "alemán", "alemão", "tedesc", "duits", "немецк", "по-немецки",
           "niemieck", "po niemiecku"),
    "fr": ("french", "französisch", "français", "francais", "francés", "francês", "frances", "frans",
           "французск", "по-французски", "francusk", "po francusku"),
    "es": ("spanish", "spanisch", "espagnol", "español", "espanhol", "spagnol", "spaans", "испанск",
           "по-испански", "hiszpańsk", "po hiszpańsku"),
    "pt": ("portuguese", "portugiesisch", "portugais", "portugués", "português", "portoghes", "portugees",
           "португальск", "portugalsk"),
    "it": ("italian", "italienisch", "italiano", "italiana", "italiaans", "итальянск", "по-итальянски", "włosk",
           "po włosku"),
    "nl": ("dutch", "niederländisch", "holländisch", "néerlandais", "neerlandés", "holandés", "holandês",
           "neerlandês", "olandes", "nederlands", "нидерландск", "голландск", "niderlandzk", "holendersk"),
    "ru": ("russian", "russisch", "russe", "ruso", "russo", "russa", "russisch", "русск", "по-русски", "rosyjsk",
           "po rosyjsku"),
    "pl": ("polish", "polnisch", "polonais", "polaco", "polonês", "polacco", "pools", "польск", "по-польски",
           "polsk", "po polsku"),
}

# Words that ask for a translation, in the nine languages (stems, matched at a word's start).
TRANSLATION_WORDS: tuple[str, ...] = (
    "translat", "übersetz", "übertrag", "tradui", "traduc", "traduz", "tradurre", "traduci", "tradotto",
    "vertaal", "vertaling", "переведи", "переведите", "перевести", "перевод", "przetłumacz", "tłumacz",
    "przełóż",
)
