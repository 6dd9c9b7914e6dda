"""Hugging Face `transformers` reference for selfsup-text's BERT-mini MLM pretraining, and with
`--electra` for its ELECTRA pretraining (configs/electra_text.toml).

The same recipe as `selfsup pretrain --config configs/mlm_text.toml`: the run's
tokenizer.json, the same corpus (IMDB train reviews + SST-2 train sentences, every 100th
document held out), BERT-mini (4 layers, 256 hidden, 4 heads, 1024 feed-forward, 128 tokens,
dropout 0.1, tied decoder), dynamic masking 15 % with 80/10/10, AdamW (lr 1e-3, betas
0.9/0.999, eps 1e-8, weight decay 0.01 on all but 1-D parameters), cosine schedule with linear
warm-up (the config's warmup_epochs / epochs of the steps) down to 1 % of the peak, batch 32
reshuffled each pass, padding to the longest sequence of the batch. Prints held-out MLM
accuracy / perplexity and training tokens/s (non-padding tokens), and ends with one JSON line.

Setup (once):  /work/venv/bin/pip install transformers tokenizers
Run:           nice -n 10 /work/venv/bin/python bench/text_reference.py \
                   --tokenizer runs/mlm_text/tokenizer.json --steps STEPS --warmup-fraction W
               (STEPS = the selfsup run's steps, W = optim.warmup_epochs / train.epochs)

--electra: ElectraForMaskedLM as the generator (4 layers, 64 hidden, 1 head, 256 feed-forward,
tied decoder) and ElectraForPreTraining as the discriminator (the BERT-mini sizes above); 15 %
of the tokens selected, 85 % of them [MASK] and the rest kept; replacements sampled from the
generator's softmax (detached); loss = generator MLM + 50 x replaced-token BCE over the
non-padding tokens; the same optimiser over both models. Prints the generator's held-out MLM
accuracy / perplexity and the discriminator's held-out detection accuracy.

Known differences from the Rust run: transformers initialises every linear layer with
N(0, 0.02) (burn's TransformerEncoder uses Kaiming-uniform), has a 1-entry token-type
embedding, LayerNorm eps 1e-12 here is set to burn's 1e-5, and its random replacement tokens
may be special tokens (selfsup draws only non-special ones). Masks come from different random
streams, so the figures agree statistically, not bit for bit.
"""

import argparse
import csv
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import BertConfig, BertForMaskedLM, ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining

csv.field_size_limit(sys.maxsize)


def data_root():
    env = os.environ.get("SELFSUP_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared" / "data"
    sys.exit("no shared/data above this script; set SELFSUP_DATA")


def texts(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f) if row["text"].strip()]


def mask_tokens(ids, pad_mask, special_mask, vocab, mask_id, gen, mask_frac=0.8, random_share=0.5):
    """BERT's 15 % / 80-10-10 masking (as DataCollatorForLanguageModeling); `random_share` is
    the share of the selected tokens not [MASK]ed that become random tokens."""
    labels = ids.clone()
    prob = torch.full(ids.shape, 0.15)
    prob.masked_fill_(special_mask | pad_mask, 0.0)
    selected = torch.bernoulli(prob, generator=gen).bool()
    labels[~selected] = -100
    inputs = ids.clone()
    replace = torch.bernoulli(torch.full(ids.shape, mask_frac), generator=gen).bool() & selected
    inputs[replace] = mask_id
    random = (
        torch.bernoulli(torch.full(ids.shape, random_share), generator=gen).bool() & selected & ~replace
    )
    inputs[random] = torch.randint(vocab, ids.shape, generator=gen)[random]
    return inputs, labels


def collate(seqs, pad_id):
    t = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), t), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
    return ids, ids == pad_id


def score_heldout(model, held_ids, pad_id, structural, vocab, mask_id):
    """Held-out MLM loss, correct and masked tokens; the same masks at every call (seed 4242)."""
    model.eval()
    eval_gen = torch.Generator().manual_seed(4242)
    total, correct, loss_sum = 0, 0, 0.0
    with torch.no_grad():
        for start in range(0, len(held_ids), 64):
            ids, pad = collate(held_ids[start : start + 64], pad_id)
            inputs, labels = mask_tokens(ids, pad, torch.isin(ids, structural), vocab, mask_id, eval_gen)
            logits = model(input_ids=inputs, attention_mask=(~pad).long()).logits
            keep = labels != -100
            n = int(keep.sum())
            loss_sum += float(torch.nn.functional.cross_entropy(logits[keep], labels[keep])) * n
            correct += int((logits[keep].argmax(-1) == labels[keep]).sum())
            total += n
    model.train()
    return loss_sum / total, correct, total


ELECTRA_MASK = dict(mask_frac=0.85, random_share=0.0)


def electra_step(generator, discriminator, ids, pad, structural, vocab, mask_id, gen):
    """Generator MLM loss and logits, discriminator loss and logits, replaced flags."""
    inputs, labels = mask_tokens(ids, pad, torch.isin(ids, structural), vocab, mask_id, gen, **ELECTRA_MASK)
    attention = (~pad).long()
    g = generator(input_ids=inputs, attention_mask=attention, labels=labels)
    selected = labels != -100
    with torch.no_grad():
        probs = torch.softmax(g.logits[selected].float(), -1)
        sampled = torch.multinomial(probs, 1, generator=gen).squeeze(1)
    corrupted = ids.clone()
    corrupted[selected] = sampled
    replaced = corrupted != ids
    d = discriminator(input_ids=corrupted, attention_mask=attention, labels=replaced.long())
    return g, labels, d, replaced


def score_electra(generator, discriminator, held_ids, pad_id, structural, vocab, mask_id):
    """Held-out generator MLM loss, correct, masked tokens; detection correct, tokens."""
    generator.eval()
    discriminator.eval()
    eval_gen = torch.Generator().manual_seed(4242)
    total, correct, loss_sum, d_correct, d_total = 0, 0, 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, len(held_ids), 64):
            ids, pad = collate(held_ids[start : start + 64], pad_id)
            g, labels, d, replaced = electra_step(generator, discriminator, ids, pad, structural, vocab, mask_id, eval_gen)
            keep = labels != -100
            n = int(keep.sum())
            loss_sum += float(torch.nn.functional.cross_entropy(g.logits[keep], labels[keep])) * n
            correct += int((g.logits[keep].argmax(-1) == labels[keep]).sum())
            total += n
            d_correct += int(((d.logits > 0) == replaced)[~pad].sum())
            d_total += int((~pad).sum())
    generator.train()
    discriminator.train()
    return loss_sum / total, correct, total, d_correct / d_total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True, help="RUN/tokenizer.json of a `selfsup pretrain` text run")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup-fraction", type=float, default=0.05,
                    help="linear warm-up over this fraction of the steps")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--eval-at", default="",
                    help="comma-separated steps after which to score the held-out text as well (e.g. one epoch)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--electra", action="store_true", help="ELECTRA (configs/electra_text.toml) instead of MLM")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(1234)

    tok = Tokenizer.from_file(args.tokenizer)
    tok.enable_truncation(args.max_len)
    special = {t: tok.token_to_id(t) for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]}
    pad_id, mask_id = special["[PAD]"], special["[MASK]"]
    structural = torch.tensor([special["[PAD]"], special["[CLS]"], special["[SEP]"]])
    vocab = tok.get_vocab_size()

    root = data_root() / "text"
    corpus = texts(root / "imdb/train.csv") + texts(root / "sst2/train.csv")
    heldout = [t for i, t in enumerate(corpus) if i % 100 == 99]
    pretrain = [t for i, t in enumerate(corpus) if i % 100 != 99]
    t0 = time.time()
    pre_ids = [e.ids for e in tok.encode_batch(pretrain)]
    held_ids = [e.ids for e in tok.encode_batch(heldout)]
    print(f"{len(pre_ids)} pretraining / {len(held_ids)} held-out documents, vocabulary {vocab},"
          f" {sum(map(len, pre_ids))} tokens, encoded in {time.time() - t0:.1f} s", file=sys.stderr)

    config = BertConfig(
        vocab_size=vocab, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=1024, max_position_embeddings=args.max_len, type_vocab_size=1,
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, layer_norm_eps=1e-5,
        pad_token_id=pad_id, tie_word_embeddings=True,
    )
    if args.electra:
        sizes = dict(vocab_size=vocab, num_hidden_layers=4, max_position_embeddings=args.max_len,
                     type_vocab_size=1, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                     layer_norm_eps=1e-5, pad_token_id=pad_id)
        generator = ElectraForMaskedLM(ElectraConfig(
            embedding_size=64, hidden_size=64, num_attention_heads=1, intermediate_size=256, **sizes))
        discriminator = ElectraForPreTraining(ElectraConfig(
            embedding_size=256, hidden_size=256, num_attention_heads=4, intermediate_size=1024, **sizes))
        model = torch.nn.ModuleDict({"generator": generator, "discriminator": discriminator})
    else:
        model = BertForMaskedLM(config)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optim = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.999), eps=1e-8,
    )
    steps, warmup = args.steps, round(args.steps * args.warmup_fraction)
    final = 0.01

    def lr_factor(step):
        if step < warmup:
            return step / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(optim, lr_factor)

    def score(model):
        if args.electra:
            return score_electra(generator, discriminator, held_ids, pad_id, structural, vocab, mask_id)
        return (*score_heldout(model, held_ids, pad_id, structural, vocab, mask_id), None)

    gen = torch.Generator().manual_seed(7)
    order_gen = torch.Generator().manual_seed(99)
    model.train()
    step, tokens, recent = 0, 0, []
    eval_at = {int(x) for x in args.eval_at.split(",") if x.strip()}
    at = {}
    t0 = time.time()
    while step < steps:
        order = torch.randperm(len(pre_ids), generator=order_gen).tolist()
        for start in range(0, len(order) - args.batch + 1, args.batch):
            if step == steps:
                break
            seqs = [pre_ids[i] for i in order[start : start + args.batch]]
            tokens += sum(map(len, seqs))
            ids, pad = collate(seqs, pad_id)
            if args.electra:
                g, _, d, _ = electra_step(generator, discriminator, ids, pad, structural, vocab, mask_id, gen)
                loss = g.loss + 50.0 * d.loss
            else:
                inputs, labels = mask_tokens(ids, pad, torch.isin(ids, structural), vocab, mask_id, gen)
                loss = model(input_ids=inputs, attention_mask=(~pad).long(), labels=labels).loss
            loss.backward()
            optim.step()
            sched.step()
            optim.zero_grad(set_to_none=True)
            recent.append(loss.item())
            step += 1
            if step in eval_at:
                paused = time.time()
                l, c, n, det = score(model)
                at[step] = {"heldout_accuracy": round(c / n, 4), "heldout_perplexity": round(math.exp(l), 3)}
                if det is not None:
                    at[step]["heldout_detection_accuracy"] = round(det, 4)
                print(f"held-out after step {step}: accuracy {c / n:.4f}  perplexity {math.exp(l):.2f}",
                      file=sys.stderr)
                t0 += time.time() - paused  # scoring is not training time
            if step % args.log_every == 0 or step == steps:
                secs = time.time() - t0
                print(f"step {step:>5}/{steps}  loss {sum(recent) / len(recent):.3f}"
                      f"  {tokens / secs:.0f} tokens/s  {secs:.0f} s", file=sys.stderr)
                recent = []
    seconds = time.time() - t0

    loss, correct, total, detection = score(model)
    result = {
        "reference": "transformers", "method": "electra" if args.electra else "mlm", "transformers_version": __import__("transformers").__version__,
        "torch_threads": torch.get_num_threads(), "steps": steps, "batch": args.batch,
        "max_len": args.max_len, "vocab": vocab, "pretrain_seconds": round(seconds),
        "pretrain_tokens_per_second": round(tokens / seconds), "heldout_accuracy": round(correct / total, 4),
        "heldout_perplexity": round(math.exp(loss), 3), "heldout_tokens": total,
        "heldout_at_steps": at,
    }
    if detection is not None:
        result["heldout_detection_accuracy"] = round(detection, 4)
    print(f"held-out after {steps} steps: accuracy {correct / total:.4f}  perplexity {math.exp(loss):.2f}"
          f"  ({total} tokens)", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
