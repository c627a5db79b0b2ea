FROM mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04

ENV AZUREML_CONDA_ENVIRONMENT_PATH /azureml-envs/sklearn-1.5
# Create conda environment
RUN conda create -p $AZUREML_CONDA_ENVIRONMENT_PATH \
    python=3.10 pip=23.3 -c anaconda -c conda-forge

# Prepend path to AzureML conda environment
ENV PATH $AZUREML_CONDA_ENVIRONMENT_PATH/bin:$PATH

# Install pip dependencies
RUN pip install 'matplotlib>=3.3,<3.9' \
                'psutil~=5.8' \
                'tqdm>=4.62,<5' \
                'pandas>=1.3,<2' \
                'scipy~=1.10' \
                'numpy~=1.23' \
                'ipykernel~=6.0' \
                'azureml-core==1.56.0' \
                'azureml-defaults==1.56.0' \
                'azureml-mlflow==1.56.0' \
                'scikit-learn~=1.5.0' \
                'debugpy~=1.6.3'

# This is needed for mpi to locate libpython
ENV LD_LIBRARY_PATH $AZUREML_CONDA_ENVIRONMENT_PATH/lib:$LD_LIBRARY_PATH
