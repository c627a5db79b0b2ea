# A typo in the first instruction.
FORM python:3.11-slim
RUN pip install numpy
