"""Per-term training values are logged on the steps Lightning writes (every log_every_n_steps) and on the last
step, and nowhere else; train/loss every step."""

from tests.tasks.nonfinite_plugins import build, loader, trainer


def test_terms_logged_on_writing_steps_and_the_last_step():
    module = build(set())
    term_steps, loss_steps = [], []
    log_dict, log = module.log_dict, module.log

    def spy_log_dict(values, *args, **kwargs):
        if any(k.startswith("train/itc") for k in values):
            term_steps.append(module.global_step)
        return log_dict(values, *args, **kwargs)

    def spy_log(name, *args, **kwargs):
        if name == "train/loss":
            loss_steps.append(module.global_step)
        return log(name, *args, **kwargs)

    module.log_dict, module.log = spy_log_dict, spy_log
    run = trainer(7, [], log_every_n_steps=3)
    run.fit(module, train_dataloaders=loader(7))
    assert loss_steps == list(range(7))
    # Lightning writes after the 3rd and 6th step (global_step 2 and 5 while they run); 6 is the last step
    assert term_steps == [2, 5, 6]
    assert "train/itc_loss" in run.callback_metrics
