"""Helpers behind the book's chapters: toys, measurements, figures and widgets.

Nothing here is needed to build or train a CapsNet; the core library (``capsedu.functional``,
``routing``, ``layers``, ``models``, ``losses``, ``data``, ``train``, ...) does not import this
package. Import the modules you need; importing the package itself loads nothing heavy.
Equation numbers are those of the paper (Sabour, Frosst & Hinton, 2017): squash Eq. 1, prediction
vectors and total input Eq. 2, routing softmax Eq. 3, margin loss Eq. 4.

Organised by topic, beside the chapters: each module computes what its chapter measures, draws it
(``plot_*``, ``draw_*``: matplotlib, drawing only data it is given) and, where the chapter has one, builds
its widget (``*_widget``, an :class:`~capsedu.teaching.interactive.InteractiveFigure`).

* ``settings``      ``CAPSEDU_TEST_MODE``: small or reading-size runs (:func:`pick`)
* ``pretrained``    the shipped models and their records (``load_pretrained``, ``pretrained_record``)
* ``motivation``    chapter 1: 1-D invariance vs equivariance, the face of parts, a pooling CNN and
  what displacing or scrambling parts does to it; the pooling widget
* ``poses``         chapter 1: 2-D pose matrices, a scene graph, parts voting for the whole, drawn
* ``squashing``     chapter 2: squash (Eq. 1) as a 1-D curve, on random vectors, its slope; the 2-D widget
* ``agreement``     chapter 3: chance agreement in high dimensions, toy votes, what each routing
  iteration changes; the routing-iterations widget
* ``architecture``  chapter 4: per-layer shapes, parameters, multiply-adds and timings; the diagram and
  the architecture widget
* ``margin``        chapter 5: the margin loss (Eq. 4) and its slope against a capsule's length; its widget
* ``curves``        chapters 5-6: running means of per-step training histories, and their plot
* ``decoder``       chapter 6: decoding one capsule, perturbing its dimensions (paper Fig. 4) and ranking
  them by how much they change the picture; the perturbation widget
* ``records``       chapters 7-8: the recorded experiment runs (``experiments/results``), summarised per row
  (mean +- std over seeds) and compared with the seed-to-seed spread
* ``couplings``     chapter 7: how far a trained CapsNet's couplings move from uniform, iteration by
  iteration; accuracy against the number of routing iterations at test time
* ``affine``        chapter 7: warping a digit (rotation, shear, scale), both models' answers, accuracy
  sweeps; their figures and the warp widget
* ``multimnist``    chapter 7: reading a pair-trained CapsNet (paper Fig. 5): reconstructions from the
  labels', the predicted and an absent class's capsules; its figure
* ``overlap``       chapter 7: how much two digits of a MultiMNIST pair overlap (``measure_overlap``)
* ``pair_curves``   chapter 7: the MultiMNIST runs' test error against pairs seen, where two curves cross,
  which run ends ahead
* ``pair_analysis`` chapter 7: a MultiMNIST model's error by overlap, at least one digit right, and the
  routing-iteration sweep at test time
* ``short_runs``    chapters 5-6: short runs of a few hundred Adam steps on the library's training loop,
  to compare losses by their early learning curves
* ``verdicts``      chapter 8: each of the paper's claims judged from chapter 7's records, with its evidence
  and seeds
* ``routing_after_2017``  chapter 10: chapter 3's toy votes lifted to 16-D and routed by every procedure of
  ``capsedu.routings``; their couplings' entropy and polarisation, side by side; the procedure widget; the
  recorded ``routing_comparison`` runs tabled per model and routing, and the runs still missing

Shared by the topics:

* ``images``        grids of grey images; tensors as numpy arrays
* ``interactive``   :class:`InteractiveFigure` (controls that recompute and redraw, with a static rendering
  for pages without a kernel) and its layout pieces (``control_row``, ``slider_grid``, ``new_figure``)
"""
