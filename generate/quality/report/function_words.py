"""Per-language word lists for the report's verb/object heuristic, written for this project.

For each language with settings of its own: `fillers`, skipped before the verb ("please",
"bitte", "por favor", "kannst du"); `not_verbs`, first words showing that the instruction
does not open with a verb (articles, pronouns, question words, auxiliaries, prepositions:
"The", "Was", "Comment", "Сколько"); `not_objects`, skipped when looking for the verb's
object (articles, determiners, pronouns, prepositions, conjunctions, number words and
common adjectives: "eine kurze E-Mail" -> "e-mail"). Words are compared lower-cased, French
and Italian ones after their elided article ("l'automne" -> "automne").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FunctionWords:
    """The lists one language's heuristic uses."""

    fillers: frozenset[str]
    not_verbs: frozenset[str]
    not_objects: frozenset[str]
    adverb_suffix: str | None = None  # a first word with this ending is an adverb, skipped ("briefly")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_EN_NOT_OBJECTS = _words(
    "a an the this that these those some any each every all both either neither such another other following "
    "given provided above below same next previous last first second third new short brief simple good few "
    "several many more most much one two three four five six seven eight nine ten me us my our your his her its "
    "their them him it you i we they of to for in on at by with from about into as and or but not how what which "
    "who whom whose why when where whether if than up out down over under between among through during without "
    "within is are be been being creative detailed interesting funny unique catchy appropriate suitable possible "
    "different")

_DE_NOT_OBJECTS = _words(
    "der die das den dem des ein eine einen einem einer eines kein keine keinen dies diese dieser dieses diesen "
    "diesem jede jeder jedes jeden alle allen einige mehrere viele folgende folgenden folgendes folgender gegebene "
    "gegebenen gegebenes obige obigen mir mich dir dich uns euch ihnen ihm ihr sich es er sie man mein meine "
    "meinen dein deine deinen sein seine seinen ihre ihren unser unsere euer eure in im ins auf für mit nach bei "
    "von vom zu zum zur aus über unter ohne um an am durch gegen zwischen und oder aber dass ob wenn als wie was "
    "warum welche welcher welches wer wo nicht auch nur bitte kurz kurze kurzen kurzes kurzer knapp knappe "
    "einfach einfache einfachen kleine kleinen neue neuen gute guten beste besten kreative kreativen detaillierte "
    "ausführlich ausführliche passende passenden verschiedene mögliche möglichst zwei drei vier fünf sechs sieben "
    "acht neun zehn ist sind sein zusammen praktische praktischen häufige häufigen wichtige wichtigen "
    "typische typischen")
_FR_NOT_OBJECTS = _words(
    "le la les un une des du de d ce cet cette ces chaque tout toute tous toutes quelques plusieurs autre autres "
    "suivant suivante suivants suivantes ci-dessous ci-dessus donné donnée donnés données me moi te toi nous vous "
    "lui leur leurs se son sa ses mon ma mes ton ta tes notre nos votre vos il elle ils elles on y en à au aux "
    "dans pour par sur avec sans sous entre chez vers selon et ou mais que qui si comme quel quelle comment "
    "pourquoi combien ne pas court courte courts courtes bref brève brièvement petit petite simple simples "
    "nouveau nouvelle bon bonne meilleur meilleure meilleurs différents différentes possible possibles créatif "
    "créative détaillé détaillée deux trois quatre cinq six sept huit neuf dix est sont pratique pratiques "
    "fréquent fréquents fréquente fréquentes important importants importante importantes")
_ES_NOT_OBJECTS = _words(
    "el la los las un una unos unas lo este esta estos estas ese esa esos esas cada todo toda todos todas algunos "
    "algunas varios varias otro otra otros otras siguiente siguientes dado dada dados dadas me te se nos le les mi "
    "mis tu tus su sus nuestro nuestra a al de del en con para por sobre sin entre hacia desde según y o e u pero "
    "que si como qué cómo cuál cuáles no breve breves corto corta cortos cortas brevemente pequeño pequeña simple "
    "sencillo sencilla nuevo nueva buen buena mejor mejores diferentes posible posibles creativo creativa "
    "detallado detallada dos tres cuatro cinco seis siete ocho nueve diez es son práctico prácticos "
    "práctica prácticas frecuente frecuentes importante importantes")
_PT_NOT_OBJECTS = _words(
    "o a os as um uma uns umas este esta estes estas isto esse essa esses essas isso cada todo toda todos todas "
    "alguns algumas vários várias outro outra outros outras seguinte seguintes dado dada dados dadas me te se nos "
    "lhe lhes meu minha meus minhas seu sua seus suas nosso nossa ao aos à às de do da dos das em no na nos nas "
    "com para por pelo pela sobre sem entre até segundo e ou mas que como qual quais não breve breves curto curta "
    "curtos curtas pequeno pequena simples novo nova bom boa melhor melhores diferentes possível possíveis "
    "criativo criativa detalhado detalhada dois duas três quatro cinco seis sete oito nove dez é são prático "
    "práticos prática práticas frequente frequentes importante importantes")
_IT_NOT_OBJECTS = _words(
    "il lo la i gli le un uno una questo questa questi queste quello quella quelli quelle ogni tutto tutta tutti "
    "tutte alcuni alcune vari varie altro altra altri altre seguente seguenti dato data dati date mi ti si ci vi "
    "mio mia miei mie tuo tua suo sua suoi sue nostro nostra loro a al allo alla ai agli alle di del dello della "
    "dei degli delle da dal dalla in nel nello nella nei negli nelle con su sul sulla per tra fra senza verso "
    "secondo e ed o ma che se come quale quali non breve brevi corto corta corti corte piccolo piccola semplice "
    "semplici nuovo nuova buono buona migliore migliori diversi diverse possibile possibili creativo creativa "
    "dettagliato dettagliata due tre quattro cinque sei sette otto nove dieci è sono pratico pratici "
    "pratica pratiche frequente frequenti importante importanti")
_NL_NOT_OBJECTS = _words(
    "de het een dit deze dat die elke ieder iedere alle sommige enkele verschillende volgende gegeven gegevens "
    "bovenstaande me mij je jou jouw ons onze hem haar hun ze zich mijn zijn uw u in op aan voor met bij van "
    "naar over uit door om tot zonder tussen onder en of maar dat als wanneer hoe wat welke waarom niet kort "
    "korte klein kleine eenvoudig eenvoudige nieuw nieuwe goed goede beste mogelijke creatieve gedetailleerde "
    "twee drie vier vijf zes zeven acht negen tien is zijn praktische praktisch veelvoorkomende belangrijke "
    "belangrijkste")
_RU_NOT_OBJECTS = _words(
    "в во на по для с со о об обо из у к ко от до за под над при без через между про мне меня мой моя моё мои "
    "тебе тебя твой твоя его её ее их им нам нас вам вас себя себе свой своё свою свои это этот эта эти этого "
    "этой этих этом эту тот та те каждый каждую все всё весь несколько и или а но что чтобы как если ли не "
    "короткий короткое короткую короткая короткие краткий краткое краткую краткая краткие небольшой небольшое "
    "небольшую простой простое простую новый новое новую хороший лучший лучшие разные следующий следующее "
    "следующую следующие следующего данный данное данную данные один одна одно два две три четыре пять шесть "
    "семь восемь девять десять практических практические практический частые частых важные важных")
_PL_NOT_OBJECTS = _words(
    "w we na dla z ze o od do po przy bez przez pod nad między za u ku mi mnie mój moja moje ci ciebie twój "
    "twoja jego jej ich im nam nas wam was się siebie swój swoją swoje to ten ta te tego tej tych tym tę każdy "
    "każdą wszystkie kilka i oraz lub albo a ale że żeby jak czy jeśli nie krótki krótką krótkie krótka krótko "
    "prosty prostą proste nowy nową nowe dobry dobrą najlepszy najlepsze różne następujący następującą "
    "następujące następujący podany podaną podane jeden jedna jedno dwa dwie trzy cztery pięć sześć siedem "
    "osiem dziewięć dziesięć praktyczne praktycznych częste częstych ważne ważnych")

FUNCTION_WORDS: dict[str, FunctionWords] = {
    "en": FunctionWords(
        fillers=_words("please kindly now then also just you can could would will let's lets i we"),
        not_verbs=(_EN_NOT_OBJECTS | _words(
            "based using according there here is are was were do does did has have had should may might must "
            "given suppose imagine assuming")) - {"list", "find"},
        not_objects=_EN_NOT_OBJECTS, adverb_suffix="ly"),
    "de": FunctionWords(
        fillers=_words("bitte kannst könntest können könnten sie du mal jetzt nun auch einfach"),
        not_verbs=_DE_NOT_OBJECTS - {"bitte", "kurz", "einfach", "knapp"} | _words(
            "war waren hat haben hatte wird werden kann soll sollte muss gibt ich wir angenommen gegeben wann "
            "woher wohin wieso weshalb"),
        not_objects=_DE_NOT_OBJECTS),
    "fr": FunctionWords(
        fillers=_words("s'il te vous plaît peux-tu pourrais-tu pouvez-vous pourriez-vous merci maintenant aussi"),
        not_verbs=_FR_NOT_OBJECTS | _words("était a ont je est-ce voici voilà étant supposons quand où quoi"),
        not_objects=_FR_NOT_OBJECTS),
    "es": FunctionWords(
        fillers=_words("por favor puedes podrías puede podría ahora también"),
        not_verbs=_ES_NOT_OBJECTS | _words("está están hay fue tiene yo nosotros quién quiénes cuándo dónde "
                                           "cuánto cuántos cuántas"),
        not_objects=_ES_NOT_OBJECTS),
    "pt": FunctionWords(
        fillers=_words("por favor você pode poderia podes agora também"),
        not_verbs=_PT_NOT_OBJECTS | _words("está estão há foi tem eu nós quem quando onde porque quanto quantos"),
        not_objects=_PT_NOT_OBJECTS),
    "it": FunctionWords(
        fillers=_words("per favore puoi potresti può potrebbe ora adesso anche"),
        not_verbs=_IT_NOT_OBJECTS | _words("c'è ha hanno io noi chi cosa quando dove perché quanto quanti"),
        not_objects=_IT_NOT_OBJECTS),
    "nl": FunctionWords(
        fillers=_words("alsjeblieft alstublieft kun kunt kan je jij u even nu ook"),
        not_verbs=_NL_NOT_OBJECTS - {"kort", "korte"} | _words("was waren heeft hebben er ik wij we wie waar "
                                                               "hoeveel"),
        not_objects=_NL_NOT_OBJECTS),
    "ru": FunctionWords(
        fillers=_words("пожалуйста можешь можете давай давайте теперь также кратко подробно коротко просто"),
        not_verbs=_RU_NOT_OBJECTS | _words("почему зачем какой какая какое какие кто где когда сколько есть был "
                                           "была было были я мы дан дано дана даны"),
        not_objects=_RU_NOT_OBJECTS),
    "pl": FunctionWords(
        fillers=_words("proszę możesz mógłbyś mogłabyś możecie teraz też także"),
        not_verbs=_PL_NOT_OBJECTS - {"krótko"} | _words("co dlaczego czemu jaki jaka jakie który która które kto "
                                                        "gdzie kiedy ile jest są był była było byli ja my dany "
                                                        "dana dane"),
        not_objects=_PL_NOT_OBJECTS),
}

# French and Italian elided articles and pronouns before an apostrophe: "l'automne", "dell'anno".
ELIDING = frozenset({"fr", "it"})
