"""galaug-analyses: the reference analyses (registered lazily: listing plugins never imports torch)."""

from galaug import hookimpl

__all__ = ["galaug_register"]


@hookimpl
def galaug_register(register):
    register.analysis("galaug_analyses.latent:LatentStructure", name="latent-structure",
                      summary="Sersic fits of generated images; separating hyperplanes and ordering in latent space")
    register.analysis("galaug_analyses.interpolate:Interpolate", name="interpolate",
                      summary="Bilinear interpolation between four latents on a K x K grid, with a smoothness figure")
    register.analysis("galaug_analyses.editing:AttributeEditing", name="attribute-editing",
                      summary="Edit samples along the latent-structure directions w*; refit; change of every parameter")
    register.analysis("galaug_analyses.realism:Realism", name="realism",
                      summary="Morphology (statmorph), power spectra, colours and pixel values: generated vs real")
    register.analysis("galaug_analyses.memorisation:Memorisation", name="memorisation",
                      summary="Nearest training image of each generated image vs held-out-to-train distances: copies")
    register.analysis("galaug_analyses.condition:ConditionCheck", name="condition-check",
                      summary="Conditional generators: sample on a grid of requested params, measure, Spearman")
