"""The run loop: Algorithm 1's iterations, each followed by the run's one sync point, then
records, read-outs and checkpoints. Every collective that all workers must call is named here,
in order (tfdiffgan/run/sync.py lists them)."""

import time

import numpy as np

from tfdiffgan import data as data_lib
from tfdiffgan import workdir as workdir_lib
from tfdiffgan.errors import Interrupted, TrainingError
from tfdiffgan.run import build
from tfdiffgan.run import checkpoints as checkpoints_lib
from tfdiffgan.run.records import fmt_time, present_agents


class Meter:
  """Iterations per second over the last logging window, and the first (tracing) step's time."""

  def __init__(self, start):
    self.t_window, self.i_window, self.trace_seconds = time.time(), start, None

  def traced(self, t0, chief):
    if self.trace_seconds is None:
      self.trace_seconds = time.time() - t0
      if chief:
        build.log("first iteration (tracing the step) took %.1fs", self.trace_seconds)

  def speed(self, done):
    now = time.time()
    speed = (done - self.i_window) / max(now - self.t_window, 1e-9)
    self.t_window, self.i_window = now, done
    return speed


def checked_losses(out, active, i, n_d, checkpoints):
  """Every agent's (D, G) losses [K] and which agents adapted (``active``: the step's input,
  None when every agent does); refuses a non-finite loss."""
  losses = out["d_loss"].numpy(), out["g_loss"].numpy()
  present = present_agents(active, n_d, len(losses[0]))
  bad = sorted({int(k) for loss, has in zip(losses, present)
                for k in np.flatnonzero(~np.isfinite(loss) & has)})
  if bad:
    raise TrainingError(f"non-finite loss at iteration {i + 1} for agent(s) {bad} (D "
                        f"{losses[0]}, G {losses[1]}). " + checkpoints.kept_and_advice())
  return losses, present


def read_out(run, done, total):
  """Periodic evaluation and sample grids: the generators are gathered to the chief (a
  collective), the chief scores and writes them while the others wait with no deadline."""
  c = run.config
  evaluate = c.eval.eval_every and done % c.eval.eval_every == 0 and done < total
  if not (evaluate or done % c.train.sample_every == 0):
    return
  gens = run.readout.gather(done)                                  # collective
  if run.chief:
    if evaluate:
      run.readout.evaluate(gens, done, c.eval.periodic_samples, run.records.writer)
    if done % c.train.sample_every == 0:
      run.readout.write_samples(gens, done, run.records.writer)
  run.sync.wait_for_chief()                                        # collective, no deadline


def train(run, stop):
  """Trains from the restored iteration to config.train.iterations; ``stop`` is the signal
  handler (workdir.StopOnSignal) polled at the end of every iteration."""
  c, n, ck = run.config, run.network, run.checkpoints
  total, start = int(c.train.iterations), ck.done
  batches = iter(data_lib.network_pipeline(n.shards, n.batch_size, c.train.n_d, c.seed,
                                           skip_iterations=start, agent_ids=n.step.agent_ids))
  clock, meter = checkpoints_lib.Clock(ck.manager.directory, start), Meter(start)
  sent = sum(float(n.schedule.messages(i) @ n.params_per_round) for i in range(start))
  out = None
  for i in range(start, total):
    t0 = time.time()
    inputs = n.schedule.step_inputs(i)
    out = n.step(next(batches), **inputs,                      # collectives: exchange
                 lr_scale=1.0 - c.train.lr_decay * i / total)
    sent += float(n.schedule.messages(i) @ n.params_per_round)
    losses, present = checked_losses(out, inputs.get("active"), i, c.train.n_d, ck)
    meter.traced(t0, run.chief)
    done = i + 1
    ck.iteration.assign(done)
    log_now = done % c.train.log_every == 0 or done == total
    save_now = done % c.train.checkpoint_every == 0
    status = run.sync.iteration(stop.received, check_weights=log_now or save_now,  # collective
                                disagreement=log_now)
    ck.refuse_nonfinite(status.nonfinite, done)
    if log_now:
      run.records.progress(done, total, losses, present, status, meter.speed(done), sent / done)
    read_out(run, done, total)
    if save_now:
      ck.save(done, clock.total())
    if status.stop and done < total:
      if not ck.has(done):
        ck.save(done, clock.total())
      run.records.writer.flush()
      raise Interrupted(f"stopped by {stop.received or 'another worker'} at iteration "
                        f"{done}/{total}; saved {ck.latest}. Rerun the same command to resume "
                        "from there.")
  return finish(run, clock, meter, out, sent)


def finish(run, clock, meter, out, sent):
  """The final checkpoint, samples, exports, scores and run.json."""
  c, n, ck = run.config, run.network, run.checkpoints
  elapsed, done, start = clock.elapsed(), ck.done, run.start
  if not ck.has(done):
    ck.save(done, clock.total())
  gens = run.readout.gather(done)                                  # collective
  raw = (run.readout.gather(done, averaged=False)                  # collective
         if n.step.ema_decay and c.eval.final_samples else None)
  status = run.sync.iteration(False, check_weights=False, disagreement=True)  # collective
  paths = run.readout.export(gens) if run.chief else []
  if run.chief:
    run.readout.write_samples(gens, done, run.records.writer)
  run.records.writer.flush()
  record = dict(run.header_record(), **{
      "iterations": done, "train_seconds": clock.total(), "trace_seconds": meter.trace_seconds,
      "iterations_per_second": (done - start) / elapsed if done > start else None,
      "parameters_sent_per_iteration": sent / done if done else None,
      "disagreement_discriminator": status.disagreement_d,
      "disagreement_generator": status.disagreement_g,
      "final_d_loss": None if out is None else out["d_loss"].numpy().tolist(),
      "final_g_loss": None if out is None else out["g_loss"].numpy().tolist(),
      "exports": paths, "placement": ck.placement_record(), "exchange": n.step.exchange.name,
      "exchange_bytes_per_iteration": n.step.exchange.traffic,  # this worker's
  })
  if not run.chief:
    build.log("worker %d done: %d iterations in %s", n.cluster.worker, done - start,
              fmt_time(elapsed))
    return record
  final = None
  if c.eval.final_samples:
    final = run.readout.evaluate(gens, done, c.eval.final_samples, run.records.writer,
                                 raw_gens=raw)
  run.records.finish(record, final)
  build.log("done: %d iterations in %s; samples in %s, exports in %s", done - start,
            fmt_time(elapsed), f"{run.workdir}/samples", f"{run.workdir}/export")
  return record
