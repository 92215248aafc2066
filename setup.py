"""hybridvit: dense prediction with fast hybrid (conv + transformer) mobile backbones."""
import os.path as osp

from setuptools import find_packages, setup


def read_version():
    namespace = {}
    with open(osp.join(osp.dirname(__file__), 'hybridvit', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def read_readme():
    path = osp.join(osp.dirname(__file__), 'README.md')
    if not osp.exists(path):
        return ''
    with open(path, encoding='utf-8') as f:
        return f.read()


setup(
    name='hybridvit',
    version=read_version(),
    description='FastViT and MobileViT backbones for OpenMMLab detection, '
    'segmentation and hand-mesh regression',
    long_description=read_readme(),
    long_description_content_type='text/markdown',
    license='MIT',
    python_requires='>=3.9',
    packages=find_packages(include=['hybridvit', 'hybridvit.*']),
    # Compatible ranges, so `pip install -e .` works inside an existing (CUDA) environment.
    # The exact tested stack is requirements/lock.txt, installed by tools/setup_env.sh.
    install_requires=[
        'torch>=2.0',
        'torchvision',
        'mmengine>=0.10,<1.0',
        'mmcv>=2.0.0rc4,<2.2.0',
        'mmdet>=3.3,<3.4',
        'mmsegmentation>=1.2,<1.3',
        'timm>=1.0,<2.0',
        'safetensors',
        'opencv-python',
        'pycocotools',
        'scipy',
        'ftfy',
        'regex',
        'scikit-image',  # bundled photographs for the generated mini datasets
        'setuptools<81',
    ],
    extras_require={
        'deploy': ['onnx', 'onnxruntime'],
        'coreml': ['coremltools>=8'],
        'mano': ['smplx'],
        'tests': ['pytest', 'matplotlib', 'tensorboard'],
    },
    zip_safe=False,
)
