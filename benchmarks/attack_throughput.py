r"""Attack speed: image-steps per second of PGD and APGD-CE in JAX against torchattacks
on the PyTorch twin of the same trained network, and the wall time of the full
ensemble.

  python benchmarks/attack_throughput.py --workdir workdirs/mnist_cnn \
      [--n 1000 --eps 0.03 --steps 100 --batch 500] [--ensemble_n 1000] \
      [--ensemble_workdirs workdirs/mnist_cnn,workdirs/mnist_noise] [--wait_idle 30]

The twin (benchmarks/torch_models.py) gets the JAX checkpoint's weights (convolutions,
BatchNorm statistics, dense layers; flatten order converted), and the benchmark checks
that both give the same logits before timing. Both attack the same images at the same
eps, batch and steps, on the same cores (torch.set_num_threads = the cores). An
image-step is one forward and backward pass of one image. JAX attacks only the images it
classifies correctly and stops a batch early once every image in it is fooled; at a
small eps (robust accuracy well above 0) no batch stops early, so both compute every
step they count. The first JAX call (compilation) is not timed. Writes
results/attack_throughput/<machine kind>/attack_throughput[_<tag>].{json,md}.
Needs the benchmark extras: pip install -r benchmarks/requirements.txt torchattacks.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import throughput as tp  # noqa: E402
from absl import app, flags  # noqa: E402

from kmnist_jax import data as data_lib  # noqa: E402
from kmnist_jax import train  # noqa: E402
from kmnist_jax.errors import UserError  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A trained `cnn` checkpoint (its dataset's test set).")
flags.DEFINE_integer("n", 1000, "Test images attacked in the PGD / APGD comparison.")
flags.DEFINE_float("eps", 0.03, "L-inf radius of the comparison (small: no early stop).")
flags.DEFINE_integer("steps", 100, "Steps of PGD and APGD-CE.")
flags.DEFINE_integer("batch", 500, "Images per batch, both frameworks.")
flags.DEFINE_list("attacks", ["pgd", "apgd-ce"], "Attacks compared: pgd, apgd-ce.")
flags.DEFINE_list("ensemble_workdirs", [], "Checkpoints whose full autoattack is timed.")
flags.DEFINE_list("ensemble_n", ["1000"], "Image counts of the ensemble timing.")
flags.DEFINE_float("ensemble_eps", 0.1, "L-inf radius of the ensemble timing.")
flags.DEFINE_string("data_dir", "", "Datasets folder (default $KMNIST_JAX_DATA_DIR).")
flags.DEFINE_float("wait_idle", 0.0, "Wait up to this many seconds for a quiet machine.")
flags.DEFINE_string("tag", "", "Results file name tag.")
flags.DEFINE_string("out", "", "Results folder (default results/attack_throughput/<kind>).")


def torch_twin(restored):
  """The PyTorch CNN with the checkpoint's weights, in eval mode."""
  import torch
  import torch_models
  from flax import nnx
  cfg = restored.config
  kw = dict(cfg.model_kwargs)
  model = torch_models.CNN(num_classes=restored.model.num_classes,
                           widths=tuple(kw.get("widths", (32, 64))),
                           depth=int(kw.get("depth", 1)), dense=int(kw.get("dense", 256)),
                           dropout=float(kw.get("dropout", 0.3)))
  st = nnx.to_pure_dict(nnx.state(restored.model))
  t = lambda a: torch.tensor(np.asarray(a, np.float32))  # noqa: E731
  mods = [m for m in model.features if not isinstance(m, torch.nn.ReLU | torch.nn.MaxPool2d
                                                      | torch.nn.Dropout)]
  convs = [m for m in mods if isinstance(m, torch.nn.Conv2d)]
  bns = [m for m in mods if isinstance(m, torch.nn.BatchNorm2d)]

  def set_bn(bn, s):
    bn.weight.data, bn.bias.data = t(s["scale"]), t(s["bias"])
    bn.running_mean.data, bn.running_var.data = t(s["mean"]), t(s["var"])
    bn.eps = float(restored.model.convs[0].bn.epsilon)

  for i, (conv, bn) in enumerate(zip(convs, bns)):
    s = st["convs"][i]
    conv.weight.data = t(np.transpose(s["conv"]["kernel"], (3, 2, 0, 1)))
    set_bn(bn, s["bn"])
  dense = next(m for m in mods if isinstance(m, torch.nn.Linear))
  k = np.asarray(st["dense"]["kernel"])
  cin = convs[-1].out_channels
  side = 28 // 2 ** (len(convs) // restored.model.depth)
  k = k.reshape(side, side, cin, -1).transpose(2, 0, 1, 3).reshape(cin * side * side, -1)
  dense.weight.data = t(k.T)
  set_bn(next(m for m in mods if isinstance(m, torch.nn.BatchNorm1d)), st["dense_bn"])
  model.head.weight.data = t(np.asarray(st["head"]["kernel"]).T)
  model.head.bias.data = t(st["head"]["bias"])
  return model.eval()


def jax_rate(restored, x, y, attack, eps, steps, batch) -> dict:
  from kmnist_jax.robustness import attacks as A
  p = A.Prepared.of(restored)
  kw = dict(attack=attack, epsilons=(eps,), prepared=p, batch_size=batch,
            settings={"pgd_steps": steps, "apgd_steps": steps})
  A.evaluate(restored, x, y, **kw)                         # compiles
  out = A.evaluate(restored, x, y, **kw)
  sec, st = sum(out["seconds"].values()), sum(out["image_steps"].values())
  return {"seconds": sec, "image_steps": st, "rate": st / sec,
          "robust_accuracy": float(out["robust"].mean())}


def torch_rate(model, x, y, attack, eps, steps, batch, cores) -> dict:
  import torch
  import torchattacks
  torch.set_num_threads(cores)
  xt = torch.tensor(x[:, None].astype(np.float32) / 255.0)
  yt = torch.tensor(y.astype(np.int64))
  if attack == "pgd":
    atk = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / steps, steps=steps,
                           random_start=True)
  else:
    atk = torchattacks.APGD(model, norm="Linf", eps=eps, steps=steps, n_restarts=1,
                            loss="ce", seed=0)
  robust, t0 = 0, time.perf_counter()
  for s in range(0, len(xt), batch):
    xa = atk(xt[s:s + batch], yt[s:s + batch])
    with torch.no_grad():
      robust += int((model(xa).argmax(1) == yt[s:s + batch]).sum())
  sec = time.perf_counter() - t0
  # torchattacks' APGD attacks only the correctly classified images, PGD all of them.
  with torch.no_grad():
    n_att = (len(xt) if attack == "pgd"
             else int((model(xt).argmax(1) == yt).sum()))
  return {"seconds": sec, "image_steps": n_att * steps, "rate": n_att * steps / sec,
          "robust_accuracy": robust / len(xt)}


def ensemble_time(workdir, n, eps, data_dir) -> dict:
  from kmnist_jax.robustness import attacks as A
  r = train.restore_model(workdir, "best")
  x, y = load(r.config.dataset, n, data_dir)
  t0 = time.perf_counter()
  out = A.evaluate(r, x, y, attack="autoattack", epsilons=(eps,))
  return {"workdir": workdir, "n": n, "eps": eps, "seconds": time.perf_counter() - t0,
          "robust_accuracy": float(out["robust"].mean()),
          "clean_accuracy": float((out["clean"] == y).mean()),
          "broken_by": {k: v[0] for k, v in out["broken_by"].items()},
          "member_seconds": out["seconds"]}


def load(dataset, n, data_dir):
  s = data_lib.load(dataset, data_dir=data_dir or None, limit={"test": n}).splits["test"]
  return s.images, s.labels.astype(np.int32)


def run() -> int:
  if not FLAGS.workdir:
    raise UserError("--workdir is required: a trained `cnn` checkpoint, e.g. "
                    "workdirs/mnist_cnn")
  attacks = tp.csv_list(",".join(FLAGS.attacks), ("pgd", "apgd-ce"), "attack")
  tp.check_tag(FLAGS.tag)
  cores = tp.core_count()
  data_dir = tp.resolve_data_dir(FLAGS.data_dir)
  restored = train.restore_model(FLAGS.workdir, "best")
  if restored.config.model != "cnn":
    raise UserError(f"--workdir {FLAGS.workdir} holds a {restored.config.model!r} "
                    "model; the twin exists for 'cnn'")
  x, y = load(restored.config.dataset, FLAGS.n, data_dir)
  import torch

  from kmnist_jax import inference
  model = torch_twin(restored)
  with torch.no_grad():
    zt = model(torch.tensor(x[:256, None].astype(np.float32) / 255.0)).numpy()
  zj = inference.predict(restored, x[:256], output="logits")
  gap = float(np.abs(zt - zj).max())
  if gap > 1e-3 * max(1.0, float(np.abs(zj).max())):
    raise UserError(f"the PyTorch twin's logits differ from the checkpoint's by {gap}")
  waited = tp.wait_for_idle(FLAGS.wait_idle, cores) if FLAGS.wait_idle else 0.0
  load_before = tp.loadavg()
  rows, res = [], {}
  for a in attacks:
    j = jax_rate(restored, x, y, a, FLAGS.eps, FLAGS.steps, FLAGS.batch)
    t = torch_rate(model, x, y, a, FLAGS.eps, FLAGS.steps, FLAGS.batch, cores)
    res[a] = {"jax": j, "torch": t, "ratio": j["rate"] / t["rate"]}
    rows.append(f"| {a.upper()}-{FLAGS.steps} | {j['rate']:,.0f} | {t['rate']:,.0f} | "
                f"**{j['rate'] / t['rate']:.2f}x** | {100 * j['robust_accuracy']:.1f} / "
                f"{100 * t['robust_accuracy']:.1f} |")
  ens = [ensemble_time(w, int(n), FLAGS.ensemble_eps, data_dir)
         for w in FLAGS.ensemble_workdirs for n in FLAGS.ensemble_n]
  meta = tp.machine_meta("cpu", cores)
  lines = [f"# Attack speed: JAX vs torchattacks ({meta['cpu_model']}, {cores} cores)", "",
           f"`{meta['command']}`"]
  if rows:    # --attacks= (empty): the ensemble timing only
    lines += ["", f"{FLAGS.n} {restored.config.dataset} test images, eps {FLAGS.eps:g}, "
              f"batch {FLAGS.batch}; image-steps per second (forward + backward of one "
              "image).", "", "| attack | JAX | torchattacks | ratio | robust acc % JAX / "
              "torch |", "|---|---|---|---|---|", *rows]
  if ens:
    lines += ["", f"Full autoattack (APGD-CE -> APGD-T x 9 -> Square 5,000) at eps "
              f"{FLAGS.ensemble_eps:g}, compilation included:", "",
              "| checkpoint | images | clean % | robust % | seconds | broken by |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {e['workdir']} | {e['n']} | {100 * e['clean_accuracy']:.1f} | "
              f"{100 * e['robust_accuracy']:.1f} | {e['seconds']:.0f} | "
              + ", ".join(f"{k} {v}" for k, v in e["broken_by"].items()) + " |"
              for e in ens]
  obj = {"meta": meta, "machine": tp.machine_info(cores, load_before),
         "waited_s": waited, "settings": {"n": FLAGS.n, "eps": FLAGS.eps,
                                          "steps": FLAGS.steps, "batch": FLAGS.batch,
                                          "workdir": FLAGS.workdir},
         "logit_gap": gap, "attacks": res, "ensemble": ens}
  tp.write_results(FLAGS.out or tp.results_dir("attack_throughput"), "attack_throughput",
                   FLAGS.tag, obj, lines)
  return 0


def main(argv):
  return tp.script_main(argv, run)


if __name__ == "__main__":
  app.run(main)
