// Entry point of the Desk Flow Editor (page `flow-editor`): the editor and the live run view.
import "./flow_editor/flow_editor.js";
