"""labkit.reference: the references the labs check a learner's code against accept a correct implementation
written differently, and reject the mistakes learners make (a check that cannot fail teaches nothing)."""
import torch

from labkit import embeddings as E
from labkit import reference as R


def test_sgns_loss_reference_agrees_with_the_training_loss_and_rejects_mistakes():
    assert R.agrees_with_sgns_loss(E.sgns_loss)
    logsig = torch.nn.functional.logsigmoid
    wrong_sign = lambda c, p, n: -(logsig((c * p).sum(-1)) + logsig((n @ c.unsqueeze(-1)).squeeze(-1)).sum(-1)).mean()
    mean_not_sum = lambda c, p, n: -(logsig((c * p).sum(-1)) + logsig(-(n @ c.unsqueeze(-1)).squeeze(-1)).mean(-1)).mean()
    detached = lambda c, p, n: E.sgns_loss(c, p, n).detach()
    for bad in (wrong_sign, mean_not_sum, detached):
        assert not R.agrees_with_sgns_loss(bad)


def _tiny_model():
    from labkit.finetune import toy
    return toy.model("micro", seed=3, num_hidden_layers=1, hidden_size=16, intermediate_size=32,
                     num_attention_heads=2, num_key_value_heads=1)[0]


def _step(shift=True, clip=True, zero=True):
    def step(model, batch, opt):
        logits = model(batch).logits
        if shift:
            logits, target = logits[:, :-1], batch[:, 1:]
        else:
            target = batch
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
        if zero:
            opt.zero_grad()
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()
    return step


def test_train_step_reference_accepts_a_hand_written_step_and_rejects_each_mistake():
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, 4096, (2, 12), generator=g) for _ in range(2)]
    assert R.agrees_with_train_step(_step(), _tiny_model, batches)
    for mistake in (dict(shift=False), dict(clip=False), dict(zero=False)):
        assert not R.agrees_with_train_step(_step(**mistake), _tiny_model, batches), mistake
