"""A darla plug-in: `sparse_ae` (a vision model) and `Dots` (an env family), both registered by the
package's entry points (pyproject.toml), so nothing here imports itself into darla's registries."""
