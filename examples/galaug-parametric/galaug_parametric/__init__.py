"""galaug-parametric: the plugin module named by the ``galaug`` entry point.

The generator is registered lazily: listing plugins does not import
scikit-learn, scipy or torch.
"""

from galaug import hookimpl


@hookimpl
def galaug_register(register):
    register.generator("galaug_parametric.generator:Parametric", name="parametric",
                       summary="Gaussian (mixture) of single-Sersic fits to the training images, rendered per band")
