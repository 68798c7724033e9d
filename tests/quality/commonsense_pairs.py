"""The common-sense suite: pairs of an obviously easy and an obviously hard prompt.

Written by hand before any router was scored on it, and never used for training or for choosing
a setting: it is a test of sanity, not a benchmark to tune on. "Hard" means a strong model is
clearly more likely to answer well than a cheap one (proofs, non-trivial code, multi-step
reasoning, subtle analysis); "easy" means any model answers it (greetings, plain facts, simple
translation, one-step arithmetic, short friendly writing).

The easy prompt is the longer one (in characters and in words) in exactly half of the pairs, so
prompt length alone orders half of them (``tests/quality/test_commonsense.py`` checks this).
"""

from __future__ import annotations

from typing import NamedTuple


class Pair(NamedTuple):
    category: str
    easy: str
    hard: str


_EMAIL = (
    "Subject: Friday team lunch\n\nHi everyone,\n\nJust a reminder that our team lunch is this Friday at "
    "12:30 at the Italian place on Harbour Street, the one with the green awning next to the bookshop. "
    "We have booked the long table at the back for fourteen people, so please let me know by Wednesday "
    "evening if you can no longer make it, so that I can update the booking. The restaurant has "
    "vegetarian and gluten-free options, and they said they can prepare a vegan pasta if we tell them "
    "in advance. Parking nearby is limited, so it is probably easiest to walk down together from the "
    "office at about 12:15; we will meet in the lobby. Lunch is paid for by the department this time, "
    "as a thank-you for all the work on the spring release, so please do not worry about bringing "
    "cash. If anyone has a birthday coming up this month, tell me quietly and I will arrange a small "
    "cake.\n\nLooking forward to seeing you all there,\n\nMargaret Okafor\nOffice Manager"
)

_RACE_CODE = (
    "import threading\n\nclass Counter:\n    def __init__(self):\n        self.value = 0\n"
    "        self.lock = threading.Lock()\n\n    def increment(self):\n        current = self.value\n"
    "        with self.lock:\n            self.value = current + 1\n\n"
    "counter = Counter()\nthreads = [threading.Thread(target=lambda: [counter.increment() for _ in range(100000)])\n"
    "           for _ in range(8)]\nfor t in threads: t.start()\nfor t in threads: t.join()\nprint(counter.value)\n"
)

_CONTRACT = (
    "1. Term. This Agreement begins on 1 March and continues for twelve (12) months unless terminated "
    "earlier under clause 7.\n2. Fees. The Client shall pay the Supplier a monthly fee of EUR 4,000, "
    "invoiced in advance, payable within thirty (30) days of the invoice date.\n3. Late payment. "
    "Amounts unpaid after fourteen (14) days from the invoice date bear interest at 8% per annum.\n"
    "4. Exclusivity. During the Term the Client shall not engage any other supplier for the Services.\n"
    "5. Subcontracting. The Supplier may subcontract any part of the Services without the Client's "
    "consent, but remains liable for its subcontractors.\n6. Liability. Neither party's total "
    "liability under this Agreement shall exceed the fees paid in the preceding three (3) months, "
    "except that the Supplier's liability for data breaches is unlimited.\n7. Termination. Either "
    "party may terminate this Agreement on ninety (90) days' written notice, provided that no notice "
    "may be given during the first twelve (12) months.\n8. Key personnel. The Supplier shall perform "
    "the Services only through the named personnel in Schedule 1 and shall not delegate any of the "
    "Services to third parties.\n9. Governing law. This Agreement is governed by the laws of Ireland, "
    "and the courts of England have exclusive jurisdiction over any dispute.\n"
)

_RECIPE = (
    "Lemon drizzle cake. Ingredients: 225 g softened butter, 225 g caster sugar, 4 eggs, 225 g "
    "self-raising flour, the zest of 1 lemon. For the drizzle: the juice of 1 1/2 lemons and 85 g "
    "caster sugar. Beat the butter and sugar, add the eggs one at a time, fold in the flour and zest, "
    "bake at 180 C for 45 minutes, then pour over the drizzle while warm."
)

_MEETING_NOTES = (
    "Minutes of the Riverside Allotment Society committee meeting.\n\nPresent: Tom (chair), Aisha "
    "(treasurer), Ben, Priya, Lucy, and Mr Hollis from plot 14 as an observer. Apologies from Dev.\n\n"
    "1. The minutes of the last meeting were approved without changes.\n2. Treasurer's report: the "
    "society has a balance of 1,240 pounds after paying for the new water butts. Membership fees for "
    "next year stay the same. Aisha will chase the three plots that have not yet paid.\n3. The "
    "communal shed: the roof leaks again at the north corner. Ben will get two quotes for a new felt "
    "roof and circulate them by email.\n4. Open day: the open day will be held in June as usual. "
    "Priya will organise the plant stall and Lucy will ask the local school whether a class would "
    "like to visit. Volunteers for the tea tent are still needed.\n5. Waiting list: there are now "
    "eleven people on the waiting list. Two plots may become available in the autumn.\n6. Any other "
    "business: Mr Hollis raised the issue of the gate being left open at night; a reminder will be "
    "posted on the noticeboard.\n\nThe next meeting will be held on Tuesday 14 May at 7 pm in the "
    "church hall."
)

_PROOF_ATTEMPT = (
    "Claim: all horses are the same colour. Proof by induction on the number n of horses in a set. "
    "Base case n = 1: trivially one horse has one colour. Inductive step: assume any set of n horses "
    "is monochromatic. Given n + 1 horses, remove the first to get n horses, which share a colour; "
    "remove the last instead to get another n horses, which also share a colour. The two sets overlap, "
    "so all n + 1 horses have the same colour."
)

_SLOW_CODE = (
    'def count_inversions(values):\n    """Number of pairs i < j with values[i] > values[j]."""\n'
    "    total = 0\n    for i in range(len(values)):\n        for j in range(i + 1, len(values)):\n"
    "            if values[i] > values[j]:\n                total += 1\n    return total\n\n\n"
    'def most_inverted_window(values, width):\n    """Start index of the window with the most inversions."""\n'
    "    best_start, best_count = 0, -1\n    for start in range(len(values) - width + 1):\n"
    "        count = count_inversions(values[start:start + width])\n        if count > best_count:\n"
    "            best_start, best_count = start, count\n    return best_start\n"
)

_ARTICLE = (
    "Why Bees Love Lavender\n\nLavender is one of the most popular plants in pollinator gardens. Its "
    "long flowering season and rich nectar attract honeybees and bumblebees from early summer to autumn."
)

_BUILD_LOG = (
    "[09:14:02] Starting build for project web-frontend (branch main, commit 4f2a9c1)\n"
    "[09:14:03] Installing dependencies from package-lock.json\n[09:14:41] added 1342 packages in 38s\n"
    "[09:14:41] Running lint\n[09:14:55] 0 errors, 3 warnings (unused variables in src/utils/date.ts)\n"
    "[09:14:55] Running unit tests\n[09:15:40] Test Suites: 87 passed, 87 total\n"
    "[09:15:40] Tests: 1024 passed, 1024 total\n[09:15:40] Running production build\n"
    "[09:16:22] Compiled successfully. Bundle size: 412 kB (gzip 128 kB)\n"
    "[09:16:23] Uploading artifacts to storage bucket\n[09:16:31] Upload complete\n"
    "[09:16:31] Deploying to staging environment\n[09:16:58] Health check passed (200 OK in 84 ms)\n"
    "[09:16:58] BUILD SUCCESSFUL in 2m 56s\n"
)

_TRIAL_TABLE = (
    "Treatment A: small stones 81/87 cured, large stones 192/263 cured. Treatment B: small stones "
    "234/270 cured, large stones 55/80 cured."
)

PAIRS: tuple[Pair, ...] = (
    # chat
    Pair(
        "chat",
        "hi, how are you?",
        "My elderly father takes warfarin and metoprolol, and his doctor just added ciprofloxacin for a "
        "urinary infection. Which interactions should I raise with the pharmacist, and how should his INR "
        "monitoring change over the next two weeks?",
    ),
    Pair(
        "chat",
        "Hey! Just wanted to say thanks a lot for the help yesterday with my shopping list, it made my "
        "weekend so much easier and my partner was impressed. Anyway, hope you have a lovely evening, talk soon!",
        "Explain why the Yoneda lemma implies a functor is determined up to isomorphism by what it represents.",
    ),
    Pair(
        "chat",
        "Good morning! Tell me a fun fact.",
        "Compare the safety guarantees of Raft and Multi-Paxos under network partitions, and explain exactly "
        "what happens to in-flight client writes when a leader is isolated in a minority partition.",
    ),
    Pair(
        "chat",
        "My friend told me a joke today and I didn't get it, but I laughed anyway to be polite. Do you ever "
        "do that kind of thing? Anyway, can you tell me a short, clean joke I could share with my coworkers?",
        "Derive the Black-Scholes PDE from a delta-hedging argument.",
    ),
    Pair(
        "chat",
        "Thanks so much for all the help today, you really made my afternoon a lot easier and I learned a "
        "lot from our chat. Have a great day and see you next time!",
        "Explain why 2-SAT is solvable in linear time but 3-SAT is NP-complete.",
    ),
    # facts
    Pair(
        "facts",
        "What is the capital of France?",
        "What were the economic and political causes of the collapse of the Bretton Woods system, how did "
        "the Nixon shock of 1971 change the relationship between the dollar, gold and other currencies, "
        "and what role did the Triffin dilemma play?",
    ),
    Pair(
        "facts",
        "I was watching a nature documentary with my kids last night and one of them asked me something I "
        "couldn't answer right away: how many legs does a spider have? Could you tell me so I can settle it?",
        "How do high-fidelity Cas9 variants reduce CRISPR off-target cleavage, mechanistically?",
    ),
    Pair(
        "facts",
        "Who wrote Romeo and Juliet?",
        "Contrast the Copenhagen and many-worlds interpretations of quantum mechanics in how each treats "
        "measurement, and explain why no experiment so far can distinguish between them.",
    ),
    Pair(
        "facts",
        "My grandmother keeps asking me this and I always forget, so I'm writing it down this time: what is "
        "the boiling point of water at sea level in degrees Celsius? Thank you, she'll be happy to know.",
        "What, concretely, does the Langlands program conjecture connects?",
    ),
    Pair(
        "facts",
        "How many days are in a week?",
        "Summarise the evidence for and against the amyloid hypothesis of Alzheimer's disease, including the "
        "lecanemab and aducanumab trial results and the main methodological criticisms of them.",
    ),
    Pair(
        "facts",
        "I'm filling in a travel form and it asks which continent my destination is on. We're flying to Kenya "
        "for a safari in the summer. Which continent is Kenya in? Sorry, I know it's a basic question!",
        "Why does the Riemann hypothesis imply a square-root error term in the prime number theorem?",
    ),
    # translation
    Pair(
        "translation",
        "Translate 'thank you' into Spanish.",
        "Translate this clause into German, keeping its precise legal meaning: 'Notwithstanding the "
        "foregoing, the Licensee shall indemnify and hold harmless the Licensor against any claims arising "
        "out of the Licensee's gross negligence, save to the extent such claims result from the Licensor's "
        "wilful misconduct.'",
    ),
    Pair(
        "translation",
        "I'm going on holiday to Italy next month with my family and I want to be polite to the people we "
        "meet at the hotel. How do you say 'good morning' in Italian? Just the phrase is fine, thanks!",
        "Translate Goethe's 'Wandrers Nachtlied II' into English verse, keeping its rhyme and metre.",
    ),
    Pair(
        "translation",
        "What does 'bonjour' mean?",
        "Translate this Classical Chinese into modern English and explain the grammatical role of 之 and 而 "
        "in it: 學而時習之，不亦說乎？有朋自遠方來，不亦樂乎？人不知而不慍，不亦君子乎？",
    ),
    Pair(
        "translation",
        "Could you please help me with a tiny thing? I'm writing a birthday card for my German colleague and "
        "I want to add one line at the end. How do I write 'Happy birthday' in German? Thanks a million!",
        "Translate Rilke's 'Herbsttag' into English verse, keeping its rhyme scheme.",
    ),
    Pair(
        "translation",
        "Translate 'cat' into French.",
        "Translate into Arabic, then back-translate literally into English, the sentence 'He let the cat out "
        "of the bag, and now the chickens are coming home to roost', and explain where the idioms shift "
        "meaning and which Arabic idioms would be closest.",
    ),
    # arithmetic
    Pair(
        "arithmetic",
        "What is 2+2?",
        "How many ways can 12 identical balls be placed into 5 distinct boxes so that no box holds more than "
        "4 balls? Show the inclusion-exclusion computation.",
    ),
    Pair(
        "arithmetic",
        "I'm helping my son with his homework tonight and he's stuck on one question, and I want to double "
        "check before I tell him the answer: what is 7 times 8? Thank you so much!",
        "Find all positive integer solutions of x^2 - 7y^2 = 1 with x < 10000.",
    ),
    Pair(
        "arithmetic",
        "What's 10% of 50?",
        "A bag holds 5 red, 4 blue and 3 green marbles. Marbles are drawn without replacement until two "
        "consecutive draws have the same colour. What is the expected number of draws? Give an exact fraction.",
    ),
    Pair(
        "arithmetic",
        "Quick question while I'm cooking dinner for my friends: the recipe serves 4 people and I'm cooking "
        "for 8, and it asks for 2 cups of rice. How many cups of rice should I use? Thanks!",
        "Evaluate the integral of x^4/(1+x^2)^3 from 0 to infinity exactly.",
    ),
    Pair(
        "arithmetic",
        "What is 15 minus 9?",
        "Let a_1 = 1 and a_(n+1) = a_n + 1/a_n. Estimate a_1000 to two decimal places and justify a rigorous "
        "error bound for your estimate.",
    ),
    Pair(
        "arithmetic",
        "My phone's calculator app crashed and I just need to check a receipt before I throw it away. I bought "
        "three items that cost 2 dollars, 3 dollars and 5 dollars. What is the total? Thanks in advance!",
        "What is the remainder when 3^2024 is divided by 1000?",
    ),
    # proofs
    Pair(
        "proofs",
        "Is 7 an odd number?",
        "Prove that every group of order p^2, where p is prime, is abelian. Give a complete argument using "
        "the class equation and justify each step.",
    ),
    Pair(
        "proofs",
        "My little sister asked me today whether a square is also a rectangle, and we ended up arguing about "
        "it at dinner for a while. Which of us is right if I said yes? Please just give a simple answer.",
        "Prove that a continuous bijection from a compact space to a Hausdorff space is a homeomorphism.",
    ),
    Pair(
        "proofs",
        "Is zero an even number?",
        "Prove Bertrand's postulate: for every integer n > 1 there is a prime p with n < p < 2n. Give a "
        "complete proof, including the bounds on the central binomial coefficient.",
    ),
    Pair(
        "proofs",
        "I remember from school that the angles of a triangle add up to some number, but I forgot what it "
        "was, and I'm doing a crossword puzzle right now where this is the clue. What do they add up to?",
        "Prove that every planar graph is 5-colourable.",
    ),
    Pair(
        "proofs",
        "Is 10 bigger than 3?",
        "Prove that the sum of the reciprocals of the primes diverges, using Erdős's counting argument, with "
        "every step justified.",
    ),
    # code
    Pair(
        "code",
        "How do I print hello world in Python?",
        "Write a lock-free multi-producer single-consumer queue in C++ with std::atomic, justify the memory "
        "ordering of every atomic operation, and explain how your design avoids the ABA problem.",
    ),
    Pair(
        "code",
        "I'm totally new to programming and just installed Python on my laptop today, following a YouTube "
        "video. How do I make a variable that holds my name and then print it out? Please keep it very simple.",
        "Implement a persistent red-black tree in Haskell with insert and delete.",
    ),
    Pair(
        "code",
        "What does HTML stand for?",
        "Write a Rust function that parses a JSON document from a byte slice without allocating for strings "
        "that contain no escapes (borrowing from the input), handles every JSON escape including surrogate "
        "pairs, and reports precise error positions.",
    ),
    Pair(
        "code",
        "I'm making a simple to-do list webpage for myself and I just want to change the background colour "
        "of the page to light blue. What CSS line do I need to add? I don't need anything fancy, thanks!",
        "Write a CUDA kernel for tiled matrix multiplication in shared memory and explain bank conflicts.",
    ),
    Pair(
        "code",
        "How do I make a list in Python?",
        "Design and implement in Go a cluster-wide per-tenant token-bucket rate limiter backed by Redis that "
        "tolerates a Redis failover without double-spending tokens, and explain the consistency trade-offs.",
    ),
    Pair(
        "code",
        "Could you remind me of the keyboard shortcut for copying text on a Windows computer? I always mix it "
        "up with the one for pasting, and I'm writing a long email to my boss right now. Thanks!",
        "Implement the Aho-Corasick algorithm in C with failure and output links.",
    ),
    # writing
    Pair(
        "writing",
        "Write one sentence about the sea.",
        "Write a Shakespearean sonnet in strict iambic pentameter about the heat death of the universe whose "
        "final couplet overturns the argument of the first twelve lines, then mark the stressed syllables of "
        "the first quatrain.",
    ),
    Pair(
        "writing",
        "I need to send a quick message to my neighbour to let her know that I'll be away this weekend and that "
        "a package might arrive for me. Can you write a short, friendly note asking her to keep it for me?",
        "Write a villanelle about grief whose two refrains are puns.",
    ),
    Pair(
        "writing",
        "Give me a synonym for happy.",
        "Write the opening chapter of a detective story told by an unreliable narrator, planting three clues "
        "from which a careful reader can deduce that the narrator is the murderer; afterwards list the clues "
        "and where they appear.",
    ),
    Pair(
        "writing",
        "I'm writing a thank-you card for my child's teacher at the end of the school year and I'm not great "
        "with words. Could you give me one or two warm sentences to write inside? She was very kind.",
        "Explain photosynthesis in one paragraph without using the letter 'e'.",
    ),
    Pair(
        "writing",
        "Write a title for a cat video.",
        "Write a 600-word op-ed arguing against carbon taxes that steelmans the strongest economic objections "
        "with concrete figures, followed by a 150-word rebuttal that answers each objection in turn.",
    ),
    # reasoning
    Pair(
        "reasoning",
        "If I have 3 apples and eat one, how many are left?",
        "Five houses in a row have different colours, owners of different nationalities, drinks, cigarette "
        "brands and pets. The Brit lives in the red house; the Swede keeps dogs; the Dane drinks tea; the "
        "green house is immediately left of the white house; the green house's owner drinks coffee; the Pall "
        "Mall smoker keeps birds; the yellow house's owner smokes Dunhill; the centre house drinks milk; the "
        "Norwegian lives in the first house; the Blends smoker lives next to the cat owner; the horse owner "
        "lives next to the Dunhill smoker; the Bluemasters smoker drinks beer; the German smokes Prince; the "
        "Norwegian lives next to the blue house; the Blends smoker's neighbour drinks water. Who owns the "
        "fish? Explain each deduction.",
    ),
    Pair(
        "reasoning",
        "My daughter asked me a riddle at the breakfast table and I think I know the answer but want to be sure "
        "before I tell her: what has hands but can't clap? I'm guessing it's a clock, is that right?",
        "Three gods, True, False and Random, answer yes/no questions with 'ja' or 'da', and you do not know "
        "which word means yes. Identify all three with three questions.",
    ),
    Pair(
        "reasoning",
        "Is the sun hot?",
        "An A/B test showed variant B raising conversions by 4% with p = 0.03, but the test was stopped the "
        "first time it reached significance after daily checks over three weeks. Explain why this p-value is "
        "misleading, estimate how inflated the false-positive rate is, and design a valid sequential test.",
    ),
    Pair(
        "reasoning",
        "We're planning a family picnic on Saturday, and the forecast says it will be sunny and warm all day, "
        "with no chance of rain at all. Do we need to bring umbrellas for rain? My husband thinks we should.",
        "Is halting decidable for Turing machines whose tape is bounded by the input length? Justify.",
    ),
    Pair(
        "reasoning",
        "My kid wants to know: if today is Monday, what day will it be tomorrow? She's learning the days of "
        "the week at school and I want to quiz her on it tonight after dinner.",
        "Derive the expected number of fair coin flips until the pattern HTH first appears.",
    ),
    Pair(
        "reasoning",
        "What day comes after Monday?",
        "In a knockout tournament, 2^n players of distinct strength are paired at random every round and the "
        "stronger always wins. What is the probability that the two strongest players meet? Derive it.",
    ),
    Pair(
        "reasoning",
        "I have two cats and my friend has one cat. We were wondering, if we put all our cats together in one "
        "room for a playdate, how many cats would be in the room in total? Sorry if that's a silly question!",
        "If the Monty Hall host opens a door at random and it happens to show a goat, should you switch? Why?",
    ),
    # long context
    Pair(
        "long context",
        _EMAIL + "\n\nWho signed this email?",
        _RACE_CODE + "\nThis prints less than 800000. Explain the bug precisely and fix it.",
    ),
    Pair(
        "long context",
        _RECIPE + "\n\nHow many eggs does this recipe need?",
        _CONTRACT + "\nIdentify every pair of clauses in this agreement that conflict, and explain each conflict.",
    ),
    Pair(
        "long context",
        _MEETING_NOTES + "\n\nWhen is the next meeting?",
        _PROOF_ATTEMPT + "\n\nFind the exact flaw in this proof.",
    ),
    Pair(
        "long context",
        _ARTICLE + "\n\nWhat is the title of this article?",
        _SLOW_CODE + "\nmost_inverted_window is O(n * w^2). Rewrite it to run in O(n log w) and prove it correct.",
    ),
    Pair(
        "long context",
        _BUILD_LOG + "\nDid this build succeed?",
        _TRIAL_TABLE + " Which treatment is better? Explain carefully.",
    ),
)
