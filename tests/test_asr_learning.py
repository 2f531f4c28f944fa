"""The one short learning test: a tiny encoder + CTC head learns a few utterances spoken by espeak-ng."""
from __future__ import annotations

import shutil
import subprocess

import pytest
import torch

import zoo
from tasks.asr.audio import load_audio
from tasks.asr.evaluation import error_rates, transcribe
from tasks.asr.units import alphabet_for

TEXTS = ["one two", "three", "four five", "six", "seven eight", "nine", "oh one", "two six"]
SPEECH = dict(dim=64, depth=2, heads=4, n_mels=40, conv_kernel=7, dropout=0.0, spec_augment=False)


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="needs Debian's espeak-ng (apt-get install espeak-ng)")
def test_ctc_learns_synthesized_digit_strings(tmp_path):
    waves = []
    for i, text in enumerate(TEXTS):
        path = tmp_path / f"{i}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "170", "-w", str(path), text], check=True)
        waves.append(load_audio(path))  # (S,) at 16 kHz from espeak-ng's 22.05 kHz
    task = zoo.get_task("asr")
    torch.manual_seed(0)
    model = zoo.create_model("speech_encoder_tiny", "ctc", backbone_args=SPEECH, alphabet=alphabet_for(TEXTS))
    batch = task.make_collate(model, train=True)([{"audio": w, "text": t} for w, t in zip(waves, TEXTS)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster, and immune to a busy second core
    try:
        for _ in range(120):
            loss = model.loss(model(batch), batch)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        hypotheses = transcribe(model, waves.__getitem__, [len(w) for w in waves], batch_size=8)
    finally:
        torch.set_num_threads(threads)
    rates = error_rates(hypotheses, TEXTS)
    assert sum(losses[-5:]) / 5 < 0.3 * sum(losses[:5]) / 5
    assert rates["cer"] < 0.3, (hypotheses, rates)

