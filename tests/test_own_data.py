"""Using coreecg on a collection of one's own: splits for stores without folds, shipped encoders by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from coreecg.cli import main
from coreecg.evaluation.selection import select
from coreecg.store import Store, StoreError

LEADS = "I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6"


def _numpy_store(tmp_path, records: int = 90, patients: int = 30):
    """A store of ``records`` synthetic-wave records from ``patients`` patients with two multi-label classes."""
    rng = np.random.default_rng(0)
    t = np.arange(1000) / 100
    signal = np.sin(2 * np.pi * rng.uniform(0.8, 2.0, (records, 1, 1)) * t) * rng.uniform(0.5, 2, (records, 12, 1))
    np.save(tmp_path / "x.npy", signal)
    patient = rng.integers(0, patients, records)
    a = (patient % 3 == 0).astype(int)
    b = rng.integers(0, 2, records)
    lines = ["id,patient_id,a,b"] + [f"r{i},p{patient[i]},{a[i]},{b[i]}" for i in range(records)]
    (tmp_path / "meta.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "store"
    assert (
        main(
            [
                "prepare",
                "numpy",
                str(tmp_path / "x.npy"),
                "--fs",
                "100",
                "--leads",
                LEADS,
                "--meta",
                str(tmp_path / "meta.csv"),
                "--label-set",
                "dx",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out


def test_split_keeps_patients_together_and_every_command_agrees_on_it(tmp_path, capsys):
    out = _numpy_store(tmp_path)
    with pytest.raises(StoreError, match=r"no record has split .train."):
        select(Store(str(out)), "dx")
    assert main(["split", str(out), "--val", "0.2", "--test", "0.2", "--seed", "3"]) == 0
    store = Store(str(out))
    records = store.records
    assert records.groupby("patient_id")["split"].nunique().max() == 1  # a patient sits in one part only
    counts = records["split"].value_counts()
    assert set(counts.index) == {"train", "val", "test"} and 0.45 < counts["train"] / len(records) < 0.75
    labels = store.label_set("dx").matrix
    for part in ("train", "val", "test"):  # class "a" is by patient: every part keeps some of it
        assert labels[records["split"].to_numpy() == part, 0].any()
    made = json.loads((out / "manifest.json").read_text())["split"]
    assert made["groups"] == "patient_id" and made["seed"] == 3 and sum(made["records"].values()) == len(records)
    assert main(["inspect", str(out), "--verify"]) == 0  # the rewritten records.csv is hashed again
    capsys.readouterr()
    assert main(["split", str(out)]) == 2
    assert "already split" in capsys.readouterr().err
    assert main(["split", str(out), "--val", "0.2", "--test", "0.2", "--seed", "3", "--force"]) == 0
    assert (Store(str(out)).records["split"] == records["split"]).all()  # seeded: the same split again
    code = main(
        [
            "probe",
            "--random-init",
            "cpu",
            "--crop-seconds",
            "2.5",
            "--store",
            str(out),
            "--task",
            "dx",
            "--test",
            "test",
            "--bootstrap",
            "20",
            "--out",
            str(tmp_path / "probe"),
        ]
    )
    assert code == 0
    assert main(["split", str(out), "--val", "0.6", "--test", "0.5", "--force"]) == 2


def test_onnx_export_of_an_encoder_and_a_classifier_matches_pytorch(tmp_path, capsys):
    import onnxruntime
    import torch

    from coreecg.dataset import Amplitude
    from coreecg.evaluation.classifier import classifier_from_encoder, load_classifier, save_classifier
    from coreecg.model import ECGEncoder, EncoderConfig
    from coreecg.preprocess import PrepConfig
    from coreecg.pretrained import PretrainedEncoder, load_encoder

    torch.manual_seed(0)
    encoder = ECGEncoder(EncoderConfig(dim=64, depth=2, heads=4, amplitude_token=True))
    PretrainedEncoder(encoder, PrepConfig(), 2.5, {}, Amplitude()).save(str(tmp_path / "enc"))
    assert main(["export", str(tmp_path / "enc"), "--out", str(tmp_path / "enc.onnx")]) == 0
    x = torch.randn(5, 12, 250)
    mask = torch.ones(5, 12, dtype=torch.bool)
    mask[1, 3:], mask[2, :11] = False, False  # three leads; lead V6 alone
    x = x * mask[..., None]
    std = torch.tensor([0.1, 0.2, 0.3, 0.5, 1.0])
    inputs = {"x": x.numpy(), "lead_mask": mask.numpy(), "record_std": std.numpy()}
    session = onnxruntime.InferenceSession(str(tmp_path / "enc.onnx"))
    got = session.run(None, {**inputs, "x": inputs["x"][:3]} | {k: v[:3] for k, v in inputs.items()})[0]
    with torch.no_grad():
        expected = load_encoder(str(tmp_path / "enc"))(x, mask, std).numpy()
    assert got.shape == (3, 64) and np.abs(got - expected[:3]).max() <= 1e-4  # dynamic batch: 3 of 5
    contract = json.loads((tmp_path / "enc.onnx.json").read_text())
    assert contract["crop_samples"] == 250 and contract["rate_hz"] == 100.0 and contract["lead_order"][6] == "V1"
    classifier = classifier_from_encoder(load_encoder(str(tmp_path / "enc")), ["a", "b", "c"], drop_path=0.0)
    save_classifier(
        classifier,
        str(tmp_path / "clf"),
        PrepConfig(),
        2.5,
        Amplitude(),
        {"task": "t", "leads": None, "thresholds": [0.5, 0.4, 0.3]},
    )
    assert main(["export", str(tmp_path / "clf"), "--out", str(tmp_path / "clf.onnx")]) == 0
    probabilities = onnxruntime.InferenceSession(str(tmp_path / "clf.onnx")).run(None, inputs)[0]
    with torch.no_grad():
        expected = load_classifier(str(tmp_path / "clf")).model.probabilities(x, mask, std).numpy()
    assert probabilities.shape == (5, 3) and np.abs(probabilities - expected).max() <= 1e-4
    assert json.loads((tmp_path / "clf.onnx.json").read_text())["thresholds"] == [0.5, 0.4, 0.3]
    capsys.readouterr()
    assert main(["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "no coreecg encoder here" in capsys.readouterr().err


class _HubStandIn:
    """A local HTTP server answering the Hub's file requests, ``/OWNER/NAME/resolve/REVISION/FILE``: the
    endpoint huggingface_hub talks to (HF_ENDPOINT), with each revision's files and commit hash."""

    def __init__(self, revisions: dict[str, tuple[str, dict[str, bytes]]]):
        import hashlib
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[tuple[str, str]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: bool) -> None:
                stand_in.requests.append((self.command, self.path))
                parts = self.path.split("?")[0].strip("/").split("/")
                known = len(parts) == 5 and parts[2] == "resolve" and parts[3] in revisions
                content = revisions[parts[3]][1].get(parts[4]) if known else None
                if content is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", revisions[parts[3]][0])
                self.send_header("ETag", '"' + hashlib.sha256(content).hexdigest() + '"')
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if body:
                    self.wfile.write(content)

            def do_HEAD(self):
                self._answer(body=False)

            def do_GET(self):
                self._answer(body=True)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_encoders_load_from_a_hub_endpoint_by_revision_and_from_its_cache(tmp_path, monkeypatch):
    import torch

    from coreecg.dataset import Amplitude
    from coreecg.model import ECGEncoder, EncoderConfig
    from coreecg.preprocess import PrepConfig
    from coreecg.pretrained import PretrainedEncoder, load_encoder

    folders = {}
    for seed in (0, 1):
        torch.manual_seed(seed)
        encoder = ECGEncoder(EncoderConfig(dim=32, depth=1, heads=2))
        PretrainedEncoder(encoder, PrepConfig(), 2.5, {"seed": seed}, Amplitude()).save(str(tmp_path / f"e{seed}"))
        folders[seed] = {n: (tmp_path / f"e{seed}" / n).read_bytes() for n in ("config.json", "model.safetensors")}
    hub = _HubStandIn({"main": ("a" * 40, folders[1]), "v1": ("b" * 40, folders[0]), "b" * 40: ("b" * 40, folders[0])})
    try:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
        latest = load_encoder("hf://someone/ecg-encoder")
        pinned = load_encoder("hf://someone/ecg-encoder@v1")
        assert latest.info == {"seed": 1} and pinned.info == {"seed": 0}
        assert torch.equal(
            pinned.encoder.patch_embed.weight, load_encoder(str(tmp_path / "e0")).encoder.patch_embed.weight
        )
        gets = [p for method, p in hub.requests if method == "GET" and p.endswith("model.safetensors")]
        load_encoder("hf://someone/ecg-encoder@v1")  # cached: no second download
        assert [p for m, p in hub.requests if m == "GET" and p.endswith("model.safetensors")] == gets
        with pytest.raises(ValueError, match="hf://someone/missing@nope: cannot fetch it from the Hub"):
            load_encoder("hf://someone/missing@nope")
        with pytest.raises(ValueError, match="expected hf://OWNER/NAME"):
            load_encoder("hf://just-a-name")
    finally:
        hub.close()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the server is gone: the pinned revision comes from the cache
    assert load_encoder("hf://someone/ecg-encoder@" + "b" * 40).info == {"seed": 0}


SHIPPED_SHA256 = {"ptbxl-cpu": "24cee45af8da11cc329fc3a445c8729668401d830ae794d84058f37bfd1de501"}
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_the_shipped_encoder_is_the_recorded_file_and_embeds_a_record_as_recorded(tmp_path):
    import hashlib

    import coreecg
    from coreecg.pretrained import SHIPPED
    from coreecg.readers.base import read_wfdb_record

    assert coreecg.available_encoders() == sorted(SHIPPED_SHA256)
    for name, sha in SHIPPED_SHA256.items():
        folder = Path(SHIPPED) / name
        assert hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest() == sha
        card = (folder / "MODEL_CARD.md").read_text()
        assert sha in card and "CC BY 4.0" in card and "Not a medical device" in card
    recorded = json.loads((FIXTURES / "ptbxl-cpu-00001_lr.json").read_text())
    raw, _ = read_wfdb_record(str(FIXTURES.parent.parent / recorded["record"]) + ".hea", "1", "test")
    encoder = coreecg.load_encoder("ptbxl-cpu")
    g = encoder.embed(raw.signal, raw.fs, raw.lead_names)
    assert g.shape == (128,) and np.allclose(g, recorded["g"], atol=1e-4)
    single = encoder.embed(raw.signal[1:2], raw.fs, ["MLII"])  # a Holter-style lead: modified lead II
    assert np.allclose(single, encoder.embed(raw.signal[1:2], raw.fs, ["II"]))
    out = tmp_path / "embeddings"
    assert (
        main(["embed", "--encoder", "ptbxl-cpu", "--wfdb", str(FIXTURES / "data" / "cinc2021"), "--out", str(out)]) == 0
    )
    assert np.load(out / "embeddings.npy").shape == (4, 128)
    with pytest.raises(FileNotFoundError, match="not the name of a shipped encoder \\(shipped: ptbxl-cpu\\)"):
        coreecg.load_encoder("ptbxl-gpu")
