"""Synthetic conversational memory for ``memstrata bench perf``: text and vectors.

Text: turns are sentence frames (``FRAMES``: user turns, assistant replies, turns
between two named people, questions) whose slots are filled from vocabularies
(people, places, foods, pets, jobs, hobbies, objects, numbers, dates). Words are drawn
with Zipf weights (a few very common, a long tail), and a session keeps a small set of
its own topic words, so lexical search sees a realistic spread of document
frequencies and sessions have themes.

Vectors: embedding a million turns with the bundled model (~170 texts/s) would take
hours, so turn vectors are *composed*: every frame (with its slots replaced by a
neutral word) and every vocabulary word is embedded once with the real bundled
embedder (cached on disk, ~1,000 texts), and a turn's vector is the L2-normalised sum
of its frame's vector, ``SLOT_WEIGHT`` times its slot words' vectors, and a little
Gaussian noise (no two turns are identical), its size chosen so that nearest-neighbour
similarities match those of real LoCoMo turns (see ``NOISE_NORM``). Queries are
composed the same way from question frames about the same vocabulary. Dense search
therefore meets the structure real embeddings have (clusters per frame and topic, near
ties), not uniform noise; it is still not the distribution of real chat embeddings
(e.g. the mean cosine between any two turns is 0.16 here, 0.22 for real turns), and
the benchmark says so.

Everything is deterministic from the seed and streamed session by session: nothing
holds the whole corpus (a million turns) in memory.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

SLOT_WEIGHT = 0.6       # slot words against the frame in a composed vector
# Expected norm of the per-turn Gaussian noise (the rest has norm ~1.5-2.5). Calibrated on
# 2,000 turns against 2,000 real LoCoMo turns embedded with the bundled model: nearest-
# neighbour cosine p10/p50/p90 0.63/0.70/0.77 here vs 0.55/0.67/0.78 real, 10th neighbour
# 0.60 vs 0.55, 100th 0.37 vs 0.41. (0.25 gave 0.82/0.91/0.97: far more clustered than
# real text, which made HNSW look worse than it is.)
NOISE_NORM = 0.8
START = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)
SPAN_DAYS = 365

# -- vocabularies ----------------------------------------------------------------------
VOCAB: dict[str, list[str]] = {
    "person": """Ana Ben Carla Dev Elena Farid Grace Hugo Ines Jonas Kira Liam Maya Noah Olga Pablo Quinn Rosa
        Sami Tara Umar Vera Wes Xenia Yusuf Zoe Aiko Bruno Chloe Diego Emma Felix Gina Hana Ivan Jade Kofi Lena Marco
        Nadia Omar Priya Rafael Sofia Theo Uma Victor Wanda Yara Zane Alma Boris Cleo Dmitri Esme Finn Greta Hector
        Iris Jasper Keanu Lucia Mateo Nina Oscar Petra Rami Selma Tomas Ursula Valentin Willa Ximena Yosef Zara Amir
        Bianca Caleb Dalia Emil Fatima Goran Helga Imran Julia Karim Leila Milan Nora Otto Paula Reza Sven Talia Ugo
        Vikram Wren Ayla Bodhi Camila Dario Elif Flora Gideon Hazel Ilya Juno Kai Luna Mira Nils Ophelia Pia Ravi""".split(),
    "place": """Lisbon Porto Madrid Seville Paris Lyon Berlin Hamburg Munich Vienna Prague Warsaw Krakow Budapest Rome
        Milan Naples Turin Athens Istanbul Cairo Nairobi Lagos Accra Dakar Tunis Marrakesh Lima Quito Bogota Santiago
        Montevideo Toronto Montreal Vancouver Seattle Portland Denver Austin Chicago Boston Atlanta Miami Havana
        Oslo Bergen Stockholm Helsinki Copenhagen Dublin Edinburgh Glasgow Cardiff Bristol Leeds Amsterdam Utrecht
        Brussels Ghent Zurich Geneva Tokyo Osaka Kyoto Seoul Busan Taipei Manila Hanoi Bangkok Jakarta Mumbai Delhi
        Sydney Melbourne Auckland Reykjavik""".split(),
    "food": """pasta ramen sushi tacos paella risotto curry dumplings pancakes waffles croissants bagels lasagna
        falafel hummus shakshuka pho burritos gnocchi pizza noodles kimchi bibimbap empanadas ceviche tapas goulash
        pierogi moussaka baklava tiramisu cheesecake brownies muffins scones granola oatmeal porridge smoothies
        lentils chickpeas quinoa couscous tofu tempeh salmon tuna sardines mussels shrimp chorizo meatballs
        omelettes frittata polenta focaccia sourdough pretzels churros gelato sorbet mango papaya figs dates
        apricots cherries blueberries avocado spinach kale""".split(),
    "pet": """dog cat puppy kitten parrot hamster rabbit turtle goldfish gecko ferret pony canary guinea-pig
        labrador beagle poodle terrier husky dachshund corgi greyhound collie siamese tabby chinchilla cockatiel
        iguana hedgehog axolotl""".split(),
    "job": """nurse teacher engineer designer baker carpenter electrician plumber chef pharmacist dentist lawyer
        architect accountant librarian journalist photographer translator barista pilot paramedic veterinarian
        researcher programmer analyst consultant gardener mechanic tailor florist musician illustrator editor
        therapist surveyor welder firefighter curator sommelier cartographer""".split(),
    "hobby": """running cycling swimming climbing hiking yoga pilates boxing fencing rowing surfing skiing
        skating chess knitting pottery painting sketching woodworking gardening baking birdwatching photography
        calligraphy origami juggling archery kayaking sailing dancing singing drumming guitar piano violin
        cello podcasting blogging journaling volunteering beekeeping astronomy geocaching""".split(),
    "object": """bike laptop phone camera guitar umbrella backpack jacket sneakers kettle blender toaster lamp
        sofa desk chair bookshelf headphones watch wallet passport notebook telescope microwave fridge drill
        ladder tent kayak scooter helmet scarf sweater mug teapot printer tablet keyboard monitor speaker
        suitcase mattress rug mirror vase clock radio thermos skateboard snowboard""".split(),
    "number": [str(n) for n in (2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 15, 18, 20, 24, 25, 30, 40, 45, 50, 60, 75, 90,
                                100, 120, 150, 200, 250, 300, 500)],
    "month": """January February March April May June July August September October November December""".split(),
}
NEUTRAL = {"person": "someone", "place": "a city", "food": "food", "pet": "a pet", "job": "a job",
           "hobby": "a hobby", "object": "a thing", "number": "some", "date": "a date"}

# -- frames ----------------------------------------------------------------------------
USER = """I finally tried the {food} place near my flat, it was better than I expected.
My sister {person} is visiting from {place} next week and I have no idea what to cook.
I started {hobby} again after a long break, my legs are sore.
Work has been intense, I'm covering for another {job} who is on leave.
Can you remind me what I said about the {object} I wanted to buy?
I adopted a {pet} and named it after {person}.
We're planning a trip to {place} around {date}, probably for {number} days.
I spent {number} euros on a new {object} and I'm not sure it was worth it.
{person} thinks I should become a {job}, what do you think?
I burned the {food} again, third time this month.
My {pet} keeps chewing the cables behind the {object}.
I signed up for a {hobby} class that meets twice a week.
I need a gift for {person}, they love {hobby} and {food}.
The {object} I ordered arrived broken, I have to send it back.
I'm thinking about moving to {place} for a job as a {job}.
Had dinner with {person} last night, we had {food} and talked for hours.
Do you know a good recipe for {food} that takes less than {number} minutes?
I lost my {object} somewhere between the office and the station.
My neighbour {person} has a {pet} that barks all night.
I ran {number} kilometres this morning, a new record for me.
I keep forgetting to water the plants when I travel to {place}.
I've been learning {hobby} from videos, it's harder than it looks.
{person} and I are arguing about whether to get a {pet}.
My interview for the {job} position is on {date}.
I want to eat healthier, less {food} and more {food}.
Could you help me plan a weekend in {place}?
I bought a second-hand {object} from {person} for {number} dollars.
My flight to {place} got cancelled, I'm stuck at the airport.
The {pet} had to go to the vet, nothing serious thankfully.
I'm hosting {number} people for dinner and I'm making {food}.
I started a new job as a {job} in {place}.
Remember that {person} is allergic to {food}.
I'm saving up for a {object}, maybe by {date}.
My back hurts from sitting at the {object} all day.
I just finished my first {hobby} competition, came in at place {number}.
I met {person} at the {hobby} club, they work as a {job}.
I can't decide between {place} and {place} for the holidays.
My landlord wants to raise the rent by {number} percent.
I've been sleeping badly since I moved to {place}.
Our team hired a new {job} called {person}.
I'm trying to cook {food} every Sunday this year.
Could you suggest a name for my new {pet}?
I fixed the {object} myself, watched a tutorial and it worked.
I'm nervous about presenting to {number} people at work.
{person} lent me their {object} for the weekend.
The {food} at the market in {place} was the best I've had.
I want to get back into {hobby}, any tips to stay motivated?
I booked tickets to {place} for {date}.
My {pet} learned a new trick, it can open the {object} now.
I'm tired of being a {job}, I want something creative.
I have a doctor's appointment on {date}, remind me to bring the papers.
I read that {food} is good for sleep, is that true?
We celebrated {person}'s birthday with {food} and a {hobby} afternoon.
My {object} battery dies after {number} minutes, it's so annoying.
I'm volunteering at the animal shelter, helped walk {number} dogs.
I have {number} unread emails and I don't want to open any of them.
I told {person} I'd help them move to {place}.
How long should I boil {food} for?
I finally cleaned the garage and found my old {object}.
I'm considering a course to become a {job}.
My partner {person} bakes {food} every weekend.
The rent in {place} is way too high for a {job} salary.
Can you keep track of my {hobby} sessions for me?
My {pet} is {number} years old now.
I'm meeting {person} for coffee to talk about {hobby}.
I returned the {object} and got a refund of {number} euros.
It rained all week in {place}, I stayed in and did {hobby}.
What should I pack for {number} days in {place}?
I promised {person} I would stop eating {food} after midnight.
The new {job} at work keeps asking me questions.
I found a great shop in {place} that sells {object}s.
Thanks, that helps a lot.
Okay, I'll think about it and get back to you.
That's a good point, I hadn't thought of that.
Haha, {person} would say the same.
Ugh, Mondays.""".strip().splitlines()

ASSISTANT = """That sounds lovely! {food} is a great choice for a relaxed dinner.
It might help to make a short list before you buy the {object}, so you can compare prices.
Congratulations on the new {pet}! Make sure it gets a check-up at the vet soon.
{place} is beautiful around {date}; booking early usually saves money.
Being a {job} is demanding; remember to take breaks when you can.
If {person} loves {hobby}, a beginner's kit or a class voucher could be a nice gift.
Here is a simple plan: prepare the {food} the night before and reheat it.
I'm sorry the {object} arrived broken. Most shops accept returns within {number} days.
Starting {hobby} slowly is wise; {number} minutes a few times a week is plenty at first.
A weekend in {place} could include a walking tour, a market visit and some local {food}.
I've noted that {person} is allergic to {food}; I'll keep that in mind.
Moving to {place} is a big step; have you compared the cost of living?
For a {pet}, a calm routine and plenty of exercise usually help with barking.
Well done on the run! Keep hydrating and stretch afterwards.
A good way to stay motivated with {hobby} is to join a group or set a small goal.
You could ask {person} whether they have experience as a {job}.
Cancelled flights are stressful; the airline should offer a rebooking or a refund.
For {number} guests, {food} scales well and can be made ahead.
Interviews for a {job} role often include a practical task; prepare a few examples.
If the {object} keeps failing, the warranty might cover a replacement.
Sleep problems after a move are common; a steady bedtime can help.
I can remind you about the appointment on {date}.
Pairing {food} with {food} makes a balanced meal.
It's great that you fixed the {object} yourself!
Presenting to {number} people is easier if you rehearse out loud twice.
{place} has a lively {hobby} scene; you might find a club there.
A name inspired by {food} could be fun for a {pet}.
Budgeting {number} euros a month would get you the {object} in time.
You mentioned {person} before; it sounds like a good friendship.
Volunteering is a wonderful way to spend a weekend.
Try boiling the {food} for about {number} minutes and taste as you go.
Changing careers from {job} to something creative is possible; start with a side project.
Packing light for {place}: layers, a rain jacket and comfortable shoes.
I'll keep a log of your {hobby} sessions whenever you tell me about them.
You're welcome! Let me know if there is anything else.
Good luck, I hope it goes well.
That makes sense.
Noted.""".strip().splitlines()

DIALOGUE = """Hey {person}, did you ever try that {food} place in {place}?
Not yet, but I heard they have amazing {food}.
I'm thinking of taking up {hobby}, want to join me?
Sure, as long as it's not before 8 in the morning.
My {pet} got into the {object} again, total chaos.
Ha, mine did the same with my {object} last week.
Guess what, I got the {job} job!
That's fantastic, you deserve it. When do you start?
I'm going to {place} on {date}, any tips?
Definitely visit the old town and eat some {food}.
How was the {hobby} class?
Exhausting but fun, we did {number} rounds.
Did {person} ever return your {object}?
No, and I've asked {number} times already.
I can't believe it's been {number} years since we moved to {place}.
Time flies. Remember the first apartment with the broken {object}?
Are you still working as a {job}?
Yes, but I'm thinking about switching to something else.
Let's cook {food} together this weekend.
Great idea, I'll bring {food} for dessert.
My {pet} turned {number} yesterday.
Aww, happy birthday to the little one!
I finally bought the {object} I was talking about.
Nice, was it expensive?
About {number} euros, not too bad.
We should plan a trip to {place} with {person}.
Yes! Maybe around {date}?
I've been so busy with work, no time for {hobby}.
Same here, being a {job} eats all my evenings.
Did you see the photos from {place}?
Yes, the one with the {pet} is my favourite.
Honestly I'm tired of {food}, we eat it every week.
Let's try something new then, maybe {food}.
How's {person} doing?
Better, they started {hobby} and it really helps.
See you on {date} then!
Sounds good, see you!""".strip().splitlines()

QUESTION = """What did I say about {food}?
Which {food} place did I try?
Who is visiting from {place}?
What do I know about {person}?
What is my {pet} called?
What happened with the {object} I ordered?
Where am I planning to travel?
How much did I spend on the {object}?
What does {person} do for work?
What hobby did I start again?
Who lent me a {object}?
What is {person} allergic to?
Where did I get a job as a {job}?
How many people am I hosting for {food}?
What did {person} and I argue about?
When is my interview for the {job} position?
What did I buy from {person}?
How old is my {pet}?
Which trip to {place} did I book?
What did {person} bake?
What tips did I get about {hobby}?
Did I fix the {object} myself?
What did I say about living in {place}?
Who did I meet at the {hobby} club?
What gift ideas did we discuss for {person}?
How far did I run?
What did my {pet} chew?
What do I think about working as a {job}?
Which city did {person} recommend?
What did we cook together?""".strip().splitlines()

_SLOT = re.compile(r"\{(\w+)\}")


def _neutral(frame: str) -> str:
    return _SLOT.sub(lambda m: NEUTRAL[m.group(1)], frame)


FRAMES: list[str] = USER + ASSISTANT + DIALOGUE + QUESTION
_KIND_RANGE = {"user": (0, len(USER)), "assistant": (len(USER), len(USER) + len(ASSISTANT)),
               "dialogue": (len(USER) + len(ASSISTANT), len(USER) + len(ASSISTANT) + len(DIALOGUE)),
               "question": (len(FRAMES) - len(QUESTION), len(FRAMES))}
_FRAME_SLOTS = [[m.group(1) for m in _SLOT.finditer(f)] for f in FRAMES]


def pool_texts() -> list[str]:
    """Every text the composed vectors are made of, embedded once: frames (neutral
    slots), then the vocabulary words in ``VOCAB`` order."""
    return [_neutral(f) for f in FRAMES] + [w for words in VOCAB.values() for w in words]


class Pool:
    """The embedded pool: one vector per frame and per vocabulary word."""

    def __init__(self, vectors: np.ndarray) -> None:
        n_frames = len(FRAMES)
        self.frames = vectors[:n_frames]
        self.words: dict[str, np.ndarray] = {}
        at = n_frames
        for kind, words in VOCAB.items():
            self.words[kind] = vectors[at : at + len(words)]
            at += len(words)
        self.dim = vectors.shape[1]

    @classmethod
    def load(cls, workdir: Path, embed: Callable[[list[str]], np.ndarray]) -> "Pool":
        """From ``workdir/perf_pool-<digest>.npy``, else embedded with ``embed`` and saved."""
        texts = pool_texts()
        digest = hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:16]
        path = Path(workdir) / f"perf_pool-{digest}.npy"
        if path.exists():
            vectors = np.load(path)
            if vectors.shape[0] == len(texts):
                return cls(vectors)
        vectors = np.asarray(embed(texts), dtype=np.float32)
        tmp = path.with_name(path.name + ".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(path)
        return cls(vectors)


# -- composition -------------------------------------------------------------------------
def _zipf(n: int) -> list[float]:
    return [1.0 / (r + 1) ** 1.0 for r in range(n)]


_WEIGHTS = {kind: _zipf(len(words)) for kind, words in VOCAB.items()}


@dataclass(frozen=True, slots=True)
class Session:
    user_id: str
    session_id: str
    start: datetime
    messages: list[dict[str, str]]
    vectors: np.ndarray        # (len(messages), dim) float32, unit rows


class Composer:
    """Fills frames and composes their vectors; one per user stream (its own RNG)."""

    def __init__(self, pool: Pool, rng: random.Random, nprng: np.random.Generator) -> None:
        self.pool = pool
        self.rng = rng
        self.nprng = nprng

    def word(self, kind: str, topic: dict[str, list[int]] | None = None) -> int:
        if topic is not None and kind in topic and self.rng.random() < 0.6:
            return self.rng.choice(topic[kind])
        return self.rng.choices(range(len(VOCAB[kind])), weights=_WEIGHTS[kind])[0]

    def fill(self, frame: int, topic: dict[str, list[int]] | None) -> tuple[str, np.ndarray]:
        vec = self.pool.frames[frame].astype(np.float32).copy()
        values: list[str] = []
        for slot in _FRAME_SLOTS[frame]:
            if slot == "date":
                m = self.word("month", topic)
                values.append(f"{VOCAB['month'][m]} {self.rng.randint(1, 28)}")
                vec += SLOT_WEIGHT * self.pool.words["month"][m]
            else:
                i = self.word(slot, topic)
                values.append(VOCAB[slot][i])
                vec += SLOT_WEIGHT * self.pool.words[slot][i]
        it = iter(values)
        text = _SLOT.sub(lambda _m: next(it), FRAMES[frame])
        return text, vec

    def frame(self, kind: str) -> int:
        lo, hi = _KIND_RANGE[kind]
        return self.rng.randrange(lo, hi)

    def finish(self, vecs: np.ndarray) -> np.ndarray:
        noise = self.nprng.standard_normal(vecs.shape).astype(np.float32) * (NOISE_NORM / np.sqrt(vecs.shape[1]))
        out = vecs + noise
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def _topic(c: Composer) -> dict[str, list[int]]:
    return {kind: [c.word(kind) for _ in range(2)] for kind in VOCAB if kind != "number"}


def user_sessions(pool: Pool, seed: int, user_index: int, user_id: str, episodes: int) -> Iterator[Session]:
    """One user's sessions in time order, exactly ``episodes`` turns in all (8-30 per
    session; the last one may be shorter), spread over ~12 months."""
    rng = random.Random(f"{seed}:{user_index}")
    c = Composer(pool, rng, np.random.default_rng([seed, user_index]))
    expected = max(1, episodes / 19)
    gap = SPAN_DAYS * 86400 / expected
    when = START + timedelta(seconds=rng.uniform(0, gap))
    left, n = episodes, 0
    names = VOCAB["person"]
    while left > 0:
        turns = min(left, rng.randint(8, 30))
        topic = _topic(c)
        vecs = np.empty((turns, pool.dim), np.float32)
        messages: list[dict[str, str]] = []
        if rng.random() < 0.2:  # two named people talking
            a, b = rng.sample(names, 2)
            for t in range(turns):
                text, vecs[t] = c.fill(c.frame("dialogue"), topic)
                messages.append({"role": "user", "name": (a, b)[t % 2], "content": text})
        else:
            for t in range(turns):
                role = "user" if t % 2 == 0 else "assistant"
                text, vecs[t] = c.fill(c.frame(role), topic)
                messages.append({"role": role, "content": text})
        vectors = c.finish(vecs)
        first: dict[str, int] = {}
        for t, m in enumerate(messages):  # a text repeated in a session embeds the same each time
            vectors[t] = vectors[first.setdefault(m["content"], t)]
        yield Session(user_id, f"s{user_index}-{n}", when, messages, vectors)
        n += 1
        left -= turns
        when += timedelta(seconds=rng.expovariate(1 / gap) + 600)


def plan_users(size: int, tenant_share: float, seed: int) -> list[tuple[str, int]]:
    """(user id, episodes): the large tenant first (``tenant_share * size``), then small
    users of 200-3,000 episodes each; the counts sum to ``size``."""
    rng = random.Random(f"{seed}:plan:{size}")
    large = max(1, round(size * tenant_share))
    users = [("large", large)]
    left = size - large
    i = 0
    while left > 0:
        n = min(left, rng.randint(200, 3000))
        if 0 < left - n < 200:
            n = left
        users.append((f"user{i:05d}", n))
        left -= n
        i += 1
    return users


def corpus(pool: Pool, size: int, tenant_share: float, seed: int) -> Iterator[Session]:
    """Every user's sessions interleaved in time order (how they would arrive)."""
    streams = [user_sessions(pool, seed, i, uid, n) for i, (uid, n) in enumerate(plan_users(size, tenant_share, seed))]
    heads: list[tuple[datetime, int, Session]] = []
    for i, s in enumerate(streams):
        first = next(s, None)
        if first is not None:
            heads.append((first.start, i, first))
    heapq.heapify(heads)
    while heads:
        _, i, session = heapq.heappop(heads)
        yield session
        following = next(streams[i], None)
        if following is not None:
            heapq.heappush(heads, (following.start, i, following))


def queries(pool: Pool, n: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """``n`` distinct questions about the corpus vocabulary, with composed vectors."""
    rng = random.Random(f"{seed}:queries")
    c = Composer(pool, rng, np.random.default_rng([seed, 999_999]))
    seen: dict[str, np.ndarray] = {}
    tries = 0
    while len(seen) < n and tries < 100 * n:
        tries += 1
        text, vec = c.fill(c.frame("question"), None)
        seen.setdefault(text, vec)
    texts = list(seen)
    vecs = c.finish(np.stack([seen[t] for t in texts])) if texts else np.zeros((0, pool.dim), np.float32)
    return list(zip(texts, vecs))

