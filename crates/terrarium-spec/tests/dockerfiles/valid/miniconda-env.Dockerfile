FROM continuumio/miniconda3:24.1.2-0

WORKDIR /app
COPY environment.yml .
RUN conda env create -f environment.yml && \
    conda clean -afy

# Make RUN commands use the new environment:
SHELL ["conda", "run", "-n", "myenv", "/bin/bash", "-c"]
RUN python -c "import flask"

COPY run.py .
ENTRYPOINT ["conda", "run", "--no-capture-output", "-n", "myenv", "python", "run.py"]
