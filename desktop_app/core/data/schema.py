"""The store's schema as a list of forward migrations.

``PRAGMA user_version`` holds how many migrations a database has had. Opening a database runs
the missing ones in order, each in its own transaction; a database written by a newer RLHF Desk
(higher version than we know) is refused rather than guessed at. Never edit a migration that
has shipped: append a new one.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the annotation loop and the run/metric tables the training jobs write to.
    """
    CREATE TABLE prompts (
        id INTEGER PRIMARY KEY,
        text TEXT NOT NULL UNIQUE,
        messages TEXT,                          -- JSON chat messages, when imported as such
        source TEXT NOT NULL DEFAULT 'manual',  -- manual | file name it was imported from
        created_at TEXT NOT NULL
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,                     -- generate | reward | ppo | eval
        config TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL,                   -- running | completed | failed | cancelled
        error TEXT,
        artifact TEXT,
        parent_run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
        created_at TEXT NOT NULL,
        finished_at TEXT
    );
    CREATE TABLE generations (
        id INTEGER PRIMARY KEY,
        prompt_id INTEGER NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
        text TEXT NOT NULL,
        model TEXT NOT NULL,                    -- model folder, or 'imported'
        adapter TEXT,                           -- adapter folder that produced it, if any
        source TEXT NOT NULL DEFAULT 'generated',  -- generated | imported
        sampling TEXT,                          -- JSON SamplingConfig
        seed INTEGER,                           -- torch seed of the generate() batch
        batch_row INTEGER,                      -- row in that batch (reproduces the sample)
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        finished INTEGER,                       -- 1 when the response ended with EOS
        run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX generations_prompt ON generations(prompt_id);
    CREATE TABLE comparisons (
        id INTEGER PRIMARY KEY,
        prompt_id INTEGER NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
        generation_a_id INTEGER NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
        generation_b_id INTEGER NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
        left_generation_id INTEGER NOT NULL
            CHECK (left_generation_id IN (generation_a_id, generation_b_id)),
        choice TEXT CHECK (choice IN ('a', 'b', 'tie', 'both_bad', 'skip')),  -- NULL = pending
        note TEXT,
        seconds REAL,
        flag TEXT,                              -- 'identical' when resampling could not differ
        source TEXT NOT NULL DEFAULT 'generated',
        created_at TEXT NOT NULL,
        judged_at TEXT
    );
    CREATE INDEX comparisons_prompt ON comparisons(prompt_id);
    CREATE INDEX comparisons_choice ON comparisons(choice, id);
    CREATE TABLE metrics (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        step INTEGER NOT NULL,
        name TEXT NOT NULL,
        value REAL,
        time REAL NOT NULL
    );
    CREATE INDEX metrics_run ON metrics(run_id, name, step);
    """,
    # 2: evaluation. Held-out prompts are never trained on; blind-evaluation pairs belong to
    # their eval run and stay out of the training data (``training = 0``) unless the person
    # adds them; ``margin`` is |r_a - r_b| under a reward model, for least-certain-first.
    """
    ALTER TABLE prompts ADD COLUMN held_out INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE comparisons ADD COLUMN eval_run_id INTEGER
        REFERENCES runs(id) ON DELETE CASCADE;
    ALTER TABLE comparisons ADD COLUMN training INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE comparisons ADD COLUMN margin REAL;
    CREATE INDEX comparisons_eval ON comparisons(eval_run_id, choice);
    """,
    # 3: prompts a generator is working on. Two generators on one workspace (two windows, a
    # window and ``rlhf-desk generate``) claim prompts batch by batch, so they share the work
    # instead of both answering the same prompts. A claim lapses when its run stops running.
    # ``adapter`` is '' for none: NULL would make every claim distinct to the primary key.
    """
    CREATE TABLE prompt_claims (
        prompt_id INTEGER NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
        model TEXT NOT NULL,
        adapter TEXT NOT NULL DEFAULT '',
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        claimed_at TEXT NOT NULL,
        PRIMARY KEY (prompt_id, model, adapter)
    );
    CREATE INDEX prompt_claims_run ON prompt_claims(run_id);
    """,
    # 4: the judgment history (Judge page, ``core/data/judgment_history.py``). Every change to a
    # stored judgment (a verdict changed, a note edited, a judgment deleted or undone) leaves a
    # row here, written in the same transaction as the change, so nothing a person decided is
    # ever lost: the old verdict and note stay readable. A NULL choice is "not judged". The
    # rows go with their comparison (deleting a prompt deletes its pairs and their history).
    # ``comparisons_judged`` lists the judgments newest first without sorting the table.
    """
    CREATE TABLE judgment_changes (
        id INTEGER PRIMARY KEY,
        comparison_id INTEGER NOT NULL REFERENCES comparisons(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,                     -- verdict | note | delete | undo
        old_choice TEXT,
        new_choice TEXT,
        old_note TEXT,
        new_note TEXT,
        changed_at TEXT NOT NULL
    );
    CREATE INDEX judgment_changes_comparison ON judgment_changes(comparison_id, id);
    CREATE INDEX comparisons_judged ON comparisons(eval_run_id, judged_at);
    """,
    # 5: chat (``core/data/chat.py``). A conversation with the current policy, kept unless it
    # is private; each turn in order. An assistant turn names the policy run that wrote it
    # (NULL: the base model) and, when it came from a rating, the comparison it won, whose
    # prompt is the conversation up to that turn. A deleted comparison keeps its turn.
    """
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE chat_turns (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content TEXT NOT NULL,
        policy_run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
        comparison_id INTEGER REFERENCES comparisons(id) ON DELETE SET NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX chat_turns_conversation ON chat_turns(conversation_id, id);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
